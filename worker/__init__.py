"""The RQ worker room: batch-scoring and retraining job functions, run by ``python -m worker``.

Jobs are plain functions that take ids and paths (``worker.scoring.score_csv``,
``worker.retraining.retrain``); ``worker.runner`` adapts RQ's worker (short heartbeats, file
retention, the model loaded once per process) and ``worker.__main__`` is the command line.
"""
