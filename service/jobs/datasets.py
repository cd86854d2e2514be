"""Where retraining data comes from: a named dataset in DATA_DIR, or an upload (CSV, NPZ, IDX pair).

Names are checked twice against path traversal: a conservative pattern (plain segments joined by
'/', so ``fashion/t10k-images-idx3-ubyte.gz`` names one split of a dataset folder), then the
resolved path must stay inside DATA_DIR (a symlink pointing out is refused too). Uploads are saved
under names that ``core.datasets.load_dataset`` recognises.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.jobs.uploads import Charge, Upload, move_into_place, save_body
from service.service_error import ServiceError

# Up to four segments, each starting with a letter or digit (so never '.' or '..').
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(rf"^{_SEGMENT}(/{_SEGMENT}){{0,3}}$")
NPZ_TYPES = ("application/x-npz", "application/octet-stream", "application/zip")
CSV_TYPES = ("text/csv", "application/csv")
TRAINING_FILE_FIELDS = ("file", "images", "labels")  # CSV or NPZ; or an IDX pair


def dataset_path(data_dir: Path, name: str, field: str = "dataset") -> Path:
    """The path of dataset ``name`` in ``data_dir``; errors name the request ``field`` it came from."""
    if not _NAME.fullmatch(name):  # every segment starts with a letter or digit: never '.' or '..'
        raise ServiceError(400, f"{field}: {name!r} is not a plain dataset name (letters, digits, '.', '_', '-'; "
                            f"'/' between the names of a folder and a file in it; nothing else)")
    root = Path(data_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ServiceError(400, f"{field}: {name!r} points outside the data directory")
    if not path.exists():
        available = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
        raise ServiceError(404, f"{field}: no dataset {name!r} in the data directory "
                            f"(available: {', '.join(available) or 'none'})")
    return path


def _kind_of(path: Path, filename_hint: str) -> str:
    """'npz' for a zip archive, else 'csv'; a file the client named .npz must be a zip archive."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return "npz"
    if filename_hint.lower().endswith(".npz"):
        raise ServiceError(400, "file: named .npz but is not a zip archive")
    return "csv"


def save_training_upload(directory: Path, mimetype: str, files: dict[str, Upload], limit: int,
                         charge: Charge) -> Path:
    """Save the training data and return the path to hand the worker (a file or an IDX directory)."""
    if mimetype == "multipart/form-data":
        if "images" in files or "labels" in files:
            if not ("images" in files and "labels" in files):
                raise ServiceError(400, "an IDX upload needs both file fields 'images' and 'labels'")
            move_into_place(files["images"], directory / "train-images-idx3-ubyte")
            move_into_place(files["labels"], directory / "train-labels-idx1-ubyte")
            return directory
        if "file" not in files:
            raise ServiceError(400, "multipart upload needs a file field 'file' (CSV or NPZ), or 'images' and "
                                "'labels' (IDX), or use a JSON body naming a dataset")
        kind = _kind_of(files["file"].path, files["file"].filename)
        return move_into_place(files["file"], directory / f"train.{kind}")
    if mimetype in CSV_TYPES:
        target = directory / "train.csv"
    elif mimetype in NPZ_TYPES:
        target = directory / "train.npz"
    else:
        raise ServiceError(415, f"send training data as text/csv, application/x-npz, multipart/form-data, "
                            f"or a JSON body naming a dataset; not {mimetype or 'no content type'}")
    save_body(target, limit, charge)
    if target.suffix == ".npz" and _kind_of(target, target.name) != "npz":
        raise ServiceError(400, "body: sent as NPZ but is not a zip archive")
    return target
