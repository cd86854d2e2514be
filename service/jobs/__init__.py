"""The job room: batch scoring and retraining submitted over HTTP and run by RQ workers.

``api`` holds the ``/v1/jobs`` endpoints; ``uploads`` streams request bodies to disk and
``budget`` admits them against the disk budget of JOBS_DIR; ``datasets`` turns a training
upload (or a DATA_DIR name) into a dataset path; ``schemas`` validates the job parameters;
``queue`` is the API's side of RQ (enqueue, status, cancel). The service enqueues by function
path and never imports ``worker``: the names both sides share live in ``core.jobs``.
"""
