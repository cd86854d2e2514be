"""The RQ worker room: batch-scoring and retraining job functions, run by ``python -m worker``.

Jobs are plain functions that take ids and paths (``worker.scoring.score_csv``,
``worker.retraining.retrain``, ``worker.shards``). ``worker.rq_worker`` is the one module that
overrides RQ's ``Worker``; the logic it hands over to lives beside it: ``horse`` (the work horse
as a process), ``fence`` (one execution at a time, a final status claimed once), ``dependencies``
(a join waits for its shards), ``endings`` (uploads deleted, failures in user terms).
``worker.__main__`` is the command line.
"""
