"""Batch scoring and retraining jobs: real redis-server, gunicorn and `python -m worker` processes."""
