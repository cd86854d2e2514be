"""Configuration from environment variables (12-factor), read once through pydantic-settings.

Every process (API, worker, trainer) builds one ``Settings`` at start-up and passes it down.
The exceptions are deliberate: gunicorn's own settings (``BIND``, ``WEB_CONCURRENCY``,
``THREADS``, ``PROMETHEUS_MULTIPROC_DIR``) are read by ``deploy/gunicorn.conf.py`` before the app
exists (``THREADS`` is also a field here, for the batcher), and the first-model bootstrap adds
its download settings in ``trainer/bootstrap.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting that cannot be used, said in one short line: 'MAX_INSTANCES: <what is wrong>; ...'."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> SettingsError:
        # pydantic's own text repeats every input value (for a model-level check, every setting
        # and default) before saying what is wrong; keep the variable name and the problem only.
        problems = [f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: {e['msg']}" for e in exc.errors()]
        return cls("invalid setting " + "; ".join(problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      protected_namespaces=())

    models_dir: Path = Field(Path("models"), description="root of the model registry")
    model_name: str = Field("mnist", description="the default model: what requests and jobs naming none use")
    served_models: str = Field("", description="comma-separated model names to serve besides MODEL_NAME; "
                                               "empty: every model in the registry")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the job queues")
    api_key: str | None = Field(None, description="bearer token for promotion and retraining; unset refuses them")
    require_key_for_all: bool = Field(False, description="also require the key for predictions and scoring")
    require_key_for_jobs: bool = Field(False, description="require the key for every /v1/jobs endpoint "
                                                          "(scoring submissions, status, results, cancel)")
    data_dir: Path = Field(Path("data"), description="datasets the server may train on by name")
    jobs_dir: Path = Field(Path("jobs"), description="uploaded CSVs and job results")
    max_instances: int = Field(4096, ge=1, description="instances per prediction request")
    # An explanation costs a backward pass and returns 784 floats per instance: a smaller cap.
    max_explain_instances: int = Field(64, ge=1, description="instances per :explain request")
    # Images cost far more CPU per byte than pixel arrays (decode, photo clean-up): a separate budget
    # keeps one request within the worker timeout.
    max_images_per_request: int = Field(256, ge=1, description="b64 images or uploaded files per prediction request")
    max_image_pixels: int = Field(4096 * 4096, ge=784, description="largest image (width x height) accepted")
    # Decoded size, not pixels, is what costs memory (a 16-bit RGBA PNG of 174 KB decodes to 64 MiB):
    # the limit per image and also what one API process holds decoded at once over its threads.
    max_image_decoded_bytes: int = Field(32 * 1024 * 1024, ge=4096,
                                         description="largest decoded image (bytes as Pillow holds it: "
                                                     "4 per pixel for colour or alpha, 1 for 8-bit gray), "
                                                     "and the decoded bytes each API process holds at once")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="largest prediction request body "
                                "(and gRPC message)")
    # Each API worker process serves gRPC on the same port (SO_REUSEPORT), beside its HTTP.
    grpc_port: int = Field(0, ge=0, le=65535, description="port of the V2 inference protocol over gRPC in each API "
                                                          "worker; 0: no gRPC")
    grpc_host: str = Field("0.0.0.0", description="address the gRPC server listens on")
    grpc_grace_seconds: float = Field(5.0, ge=0, le=300, description="on shutdown, how long in-flight gRPC calls "
                                                                     "may finish before they are cancelled")
    max_upload_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1024, description="largest CSV/dataset upload")
    jobs_disk_budget_bytes: int = Field(10 * 1024 * 1024 * 1024, ge=0, description="most bytes JOBS_DIR may hold "
                                        "(uploads and results); an upload past it is refused with 507; 0: no budget")
    reload_interval: float = Field(0.5, ge=0.0, description="seconds between registry checks for a new model")
    job_retention_seconds: int = Field(7 * 24 * 3600, ge=60,
                                       description="how long results are kept (uploads go when their job ends)")
    job_timeout_seconds: int = Field(6 * 3600, ge=10, description="longest a job may run")
    log_level: str = Field("INFO", description="logging level of every process")
    # Every access line costs a JSON encode and a write per request; at thousands of requests a
    # second a sample says as much. Error answers (status >= 400) are always logged.
    access_log_sample: float = Field(1.0, ge=0.0, le=1.0, description="share of successful requests written to "
                                     "the API's access log (0..1); error answers are always logged")
    # Batch jobs (RQ worker). Short intervals let a killed worker's job be retried quickly; the
    # defaults suit production, tests shrink them to seconds.
    job_retries: int = Field(2, ge=0, le=10, description="retries of a job whose worker died or that crashed")
    job_monitoring_interval: int = Field(10, ge=1, description="seconds between a busy worker's job heartbeats")
    job_heartbeat_grace: int = Field(30, ge=1, description="seconds after a missed heartbeat before a job "
                                                            "counts as abandoned and is retried")
    worker_maintenance_interval: int = Field(60, ge=1, description="seconds between abandoned-job and "
                                                                    "expired-file cleanups in an idle worker")
    # Adaptive batching (service.batching): concurrent requests of one API worker process merged
    # into one forward pass. A batch only merges what is concurrent in one process (gunicorn's
    # THREADS per worker); see docs/decisions/0009-batching-off-by-default.md for when it pays.
    max_batch_size: int = Field(1, ge=1, le=65536, description="most rows one batched forward pass merges from "
                                "concurrent requests of an API worker process; 1 turns batching off")
    max_batch_delay_us: int = Field(0, ge=0, le=1_000_000, description="microseconds a batch may wait for more "
                                    "requests after its oldest arrived (0: merge only what queued meanwhile)")
    # gunicorn's THREADS (deploy/gunicorn.conf.py reads the same variable): once a request from every
    # thread of the process waits in a batch, nobody else can arrive, and the batch runs at once.
    threads: int | None = Field(None, ge=1, le=1024, description="threads per API worker process (gunicorn's "
                                "THREADS); unset: batches wait out their delay")
    # 5,000: a 10,000-row chunk peaks at about 350 MB per work horse (pandas keeps a pointer per
    # field while parsing), 5,000 rows at about 230 MB, at the same speed
    # (docs/decisions/0012-scoring-chunks-and-reader-thread.md).
    scoring_chunk_rows: int = Field(5_000, ge=1, le=1_000_000, description="CSV rows a scoring job holds at once")
    # An upload larger than this is scored as several shards, one RQ job each, that any worker takes.
    scoring_shard_bytes: int = Field(64 * 1024 * 1024, ge=0, description="bytes of CSV per scoring shard; "
                                     "a larger upload is split at line boundaries (0: never shard)")
    # The reader thread (worker.scoring.prefetched) parses the next chunk while the forward pass
    # runs. Parsing is most of the cost, so it gains little (1,000,000 rows: 1.05-1.08 cores busy
    # with it, 1.00 without, same rows/s; docs/operating.md) and holds one more chunk in memory.
    scoring_prefetch: bool = Field(True, description="parse the next CSV chunk in a reader thread while the "
                                   "current one is scored (false: one thread per job, for one worker per core)")

    @property
    def served_model_names(self) -> list[str]:
        """``SERVED_MODELS`` as a list (empty: serve every model the registry holds)."""
        return [name.strip() for name in self.served_models.split(",") if name.strip()]

    @field_validator("models_dir", "data_dir", "jobs_dir", mode="after")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Resolved once, against the directory the process started in: later code (Flask's
        # send_file resolves relative paths against the package, RQ work horses, subprocesses)
        # must never reinterpret a relative path against some other directory.
        return path.expanduser().absolute()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError.from_validation(exc) from None
