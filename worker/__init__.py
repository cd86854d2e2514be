"""The RQ worker: batch-scoring and retraining jobs, run by ``python -m worker``."""
