"""``GET /v1/models/{name}/versions/{v}/evaluation``: a version's confusion matrix and per-class metrics.

The manifest keeps the dev metrics and curve but not the confusion matrix, so this endpoint
recomputes it with one forward pass over labelled data in DATA_DIR: ``?dataset=<name>``, or by
default the file the version was trained on (its manifest's ``dataset.train.source``, looked up
by file name in DATA_DIR). When that file's digest matches the manifest, the evaluation uses
the same dev split the trainer held out (its last ``dataset.dev.rows`` rows); any other
dataset is evaluated whole, up to ``MAX_ROWS`` rows from its end. A version trained with a dev
dataset of its own (``dataset.dev.split == "file"``: every training row was trained on) is
evaluated by default on that dev dataset, whole. ``core.evaluation.held_out`` makes that choice, for
the trainer's ``evaluate`` command too.

Answers are cached per process by version and file identity (path, size, mtime), so the
console's repeated views cost one forward pass per version.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, request

from core.evaluation import confusion_report, default_source, held_out
from service.auth import guard_blueprint
from service.codecs.jsonio import json_response
from service.jobs.datasets import dataset_path
from service.service_error import ServiceError
from service.state import get_state
from service.targets import check_model_name, parse_version

blueprint = Blueprint("evaluation", __name__)
guard_blueprint(blueprint)  # under REQUIRE_KEY_FOR_ALL, like every other model endpoint
MAX_ROWS = 10_000  # one forward pass per request: bounded like a large predict batch
_CACHE_SIZE = 32
_lock = threading.Lock()


def _default_dataset(manifest: dict[str, Any], data_dir: Path) -> str:
    source = default_source(manifest)
    if not source:
        raise ServiceError(404, "this version's manifest names no training data: give ?dataset=<name in DATA_DIR>")
    path = Path(source)
    with contextlib.suppress(ValueError, OSError):  # a folder in DATA_DIR ('fashion/...') keeps its folder
        return path.resolve().relative_to(Path(data_dir).resolve()).as_posix()
    return path.name


@blueprint.get("/v1/models/<model:name>/versions/<version:version>/evaluation")
def evaluate_version(name: str, version: str) -> Response:
    check_model_name(name)
    number = parse_version(version)
    state = get_state()
    manifest = state.registry.manifest(name, number)  # 404 for an unknown version
    dataset_name = request.args.get("dataset")
    if dataset_name == "":
        raise ServiceError(422, "dataset: empty; leave it out to evaluate on the version's dev split")
    dataset_name = dataset_name or _default_dataset(manifest, state.settings.data_dir)
    path = dataset_path(state.settings.data_dir, dataset_name)
    stat = path.stat()
    key = (name, number, str(path), stat.st_size, stat.st_mtime_ns)
    cache: dict[tuple, dict[str, Any]] = current_app.extensions.setdefault("mnist.evaluations", {})
    with _lock:
        cached = cache.get(key)
    if cached is not None:
        return json_response(cached)
    # Here, not at import: core.datasets pulls in pandas, which the API process otherwise never loads.
    from core.datasets import DatasetError, load_dataset

    try:
        data = load_dataset(path)
    except DatasetError as exc:
        raise ServiceError(422, f"dataset {dataset_name!r}: {str(exc).replace(str(path), dataset_name)}") from None
    chosen = held_out(manifest, data)
    rows, split = min(chosen.rows, MAX_ROWS), chosen.split
    if rows < chosen.rows:
        split += f", its last {rows} rows (at most {MAX_ROWS} per evaluation)"
    model = state.dataplane.model(name, number)  # RegistryError (404/409/503) goes to the error handler
    scored = data.tail(rows)
    body = {"model_name": name, "model_version": number, "dataset": dataset_name, "rows": rows, "split": split,
            **confusion_report(np.asarray(scored.y, dtype=np.int64), model.predict_proba(scored.X))}
    with _lock:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = body
    return json_response(body)
