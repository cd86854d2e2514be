"""Where retraining data comes from: a named dataset in DATA_DIR, or an upload (CSV, NPZ, IDX pair).

Names are checked twice against path traversal: a conservative pattern, then the resolved
path must stay inside DATA_DIR (a symlink pointing out is refused too). Uploads are saved
under names that ``core.datasets.load_dataset`` recognises.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import ApiError
from service.jobs_uploads import Upload, move_into_place, save_body

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NPZ_TYPES = ("application/x-npz", "application/octet-stream", "application/zip")
CSV_TYPES = ("text/csv", "application/csv")
TRAINING_FILE_FIELDS = ("file", "images", "labels")  # CSV or NPZ; or an IDX pair


def dataset_path(data_dir: Path, name: str) -> Path:
    if not _NAME.match(name) or ".." in name:
        raise ApiError(400, f"dataset: {name!r} is not a plain dataset name (letters, digits, '.', '_', '-'; "
                            f"no paths)")
    root = Path(data_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ApiError(400, f"dataset: {name!r} points outside the data directory")
    if not path.exists():
        available = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
        raise ApiError(404, f"dataset: no dataset {name!r} in the data directory "
                            f"(available: {', '.join(available) or 'none'})")
    return path


def _kind_of(path: Path, filename_hint: str) -> str:
    """'npz' for a zip archive, else 'csv'; a file the client named .npz must be a zip archive."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return "npz"
    if filename_hint.lower().endswith(".npz"):
        raise ApiError(400, "file: named .npz but is not a zip archive")
    return "csv"


def save_training_upload(directory: Path, mimetype: str, files: dict[str, Upload], limit: int) -> Path:
    """Save the training data and return the path to hand the worker (a file or an IDX directory)."""
    if mimetype == "multipart/form-data":
        if "images" in files or "labels" in files:
            if not ("images" in files and "labels" in files):
                raise ApiError(400, "an IDX upload needs both file fields 'images' and 'labels'")
            move_into_place(files["images"], directory / "train-images-idx3-ubyte")
            move_into_place(files["labels"], directory / "train-labels-idx1-ubyte")
            return directory
        if "file" not in files:
            raise ApiError(400, "multipart upload needs a file field 'file' (CSV or NPZ), or 'images' and "
                                "'labels' (IDX), or use a JSON body naming a dataset")
        kind = _kind_of(files["file"].path, files["file"].filename)
        return move_into_place(files["file"], directory / f"train.{kind}")
    if mimetype in CSV_TYPES:
        target = directory / "train.csv"
    elif mimetype in NPZ_TYPES:
        target = directory / "train.npz"
    else:
        raise ApiError(415, f"send training data as text/csv, application/x-npz, multipart/form-data, "
                            f"or a JSON body naming a dataset; not {mimetype or 'no content type'}")
    save_body(target, limit)
    if target.suffix == ".npz" and _kind_of(target, target.name) != "npz":
        raise ApiError(400, "body: sent as NPZ but is not a zip archive")
    return target
