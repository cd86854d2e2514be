"""Configuration from environment variables (12-factor), read once through pydantic-settings.

Every process (API, worker, trainer) builds one ``Settings`` at start-up and passes it down.
The exceptions are deliberate: gunicorn's own settings (``BIND``, ``WEB_CONCURRENCY``,
``THREADS``, ``PROMETHEUS_MULTIPROC_DIR``) are read by ``deploy/gunicorn.conf.py`` before the app
exists, and the first-model bootstrap adds its download settings in ``trainer/bootstrap.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      protected_namespaces=())

    models_dir: Path = Field(Path("models"), description="root of the model registry")
    model_name: str = Field("mnist", description="the model this deployment serves")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the job queues")
    api_key: str | None = Field(None, description="bearer token for promotion and retraining; unset refuses them")
    require_key_for_all: bool = Field(False, description="also require the key for predictions and scoring")
    data_dir: Path = Field(Path("data"), description="datasets the server may train on by name")
    jobs_dir: Path = Field(Path("jobs"), description="uploaded CSVs and job results")
    max_instances: int = Field(4096, ge=1, description="instances per prediction request")
    # Images cost far more CPU per byte than pixel arrays (decode, photo clean-up): a separate budget
    # keeps one request within the worker timeout.
    max_images_per_request: int = Field(256, ge=1, description="b64 images or uploaded files per prediction request")
    max_image_pixels: int = Field(4096 * 4096, ge=784, description="largest image (width x height) accepted")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="largest prediction request body")
    max_upload_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1024, description="largest CSV/dataset upload")
    reload_interval: float = Field(0.5, ge=0.0, description="seconds between registry checks for a new model")
    job_retention_seconds: int = Field(7 * 24 * 3600, ge=60, description="how long uploads and results are kept")
    job_timeout_seconds: int = Field(6 * 3600, ge=10, description="longest a job may run")
    log_level: str = Field("INFO", description="logging level of every process")
    # Batch jobs (RQ worker). Short intervals let a killed worker's job be retried quickly; the
    # defaults suit production, tests shrink them to seconds.
    job_retries: int = Field(2, ge=0, le=10, description="retries of a job whose worker died or that crashed")
    job_monitoring_interval: int = Field(10, ge=1, description="seconds between a busy worker's job heartbeats")
    job_heartbeat_grace: int = Field(30, ge=1, description="seconds after a missed heartbeat before a job "
                                                            "counts as abandoned and is retried")
    worker_maintenance_interval: int = Field(60, ge=1, description="seconds between abandoned-job and "
                                                                    "expired-file cleanups in an idle worker")
    scoring_chunk_rows: int = Field(10_000, ge=1, le=1_000_000, description="CSV rows a scoring job holds at once")

    @field_validator("models_dir", "data_dir", "jobs_dir", mode="after")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Resolved once, against the directory the process started in: later code (Flask's
        # send_file resolves relative paths against the package, RQ work horses, subprocesses)
        # must never reinterpret a relative path against some other directory.
        return path.expanduser().absolute()
