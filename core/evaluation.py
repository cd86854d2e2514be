"""Scoring a version on labelled rows, and which rows to score: one definition for the trainer's
``evaluate`` command, the API's evaluation endpoint and the retraining job's promotion gate.

A version's honest figure comes from rows it never trained on. When the data handed in is the file
the version was trained on (same digest), only its dev split (the file's last ``dev.rows`` rows)
is held out; scoring the whole file would mostly measure memory of the training rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.digits import N_CLASSES, Dataset
from core.network import cross_entropy


@dataclass(frozen=True)
class HeldOut:
    """The rows to score (the last ``rows`` of the data) and what they are, in words."""

    rows: int
    split: str
    trained_rows: int = 0  # of those rows, how many the version was trained on (0 for a held-out split)


def _dev_came_from_own_file(manifest: dict[str, Any]) -> bool:
    """Whether the version's dev rows came from a dataset of their own (every training row was trained on)."""
    return manifest.get("dataset", {}).get("dev", {}).get("split") == "file"


def default_source(manifest: dict[str, Any]) -> str:
    """The data file that holds the version's held-out rows (its dev file, else its training file),
    as the manifest records it ('' when it records none)."""
    split = "dev" if _dev_came_from_own_file(manifest) else "train"
    source = str(manifest.get("dataset", {}).get(split, {}).get("source") or "")
    return source.split(" (", 1)[0]  # "data/x.gz (last 2000)" -> "data/x.gz"


def held_out(manifest: dict[str, Any], data: Dataset, all_rows: bool = False) -> HeldOut:
    """Which of ``data``'s rows to score for the version ``manifest`` describes."""
    dataset = manifest.get("dataset", {})
    train, dev = dataset.get("train", {}), dataset.get("dev", {})
    # The held-out tail of the training file: the dev rows, then the test rows when there are any.
    dev_rows = int(dev.get("rows") or 0) + int(dataset.get("test", {}).get("rows") or 0)
    if _dev_came_from_own_file(manifest):
        if data.digest == dev.get("sha256"):
            return HeldOut(len(data), "the dev dataset the version was evaluated on")
        if data.digest == train.get("sha256"):
            return HeldOut(len(data), "the dataset the version was trained on (every row trained on)", len(data))
    elif data.digest == train.get("sha256") and 0 < dev_rows <= len(data):
        if not all_rows:
            return HeldOut(dev_rows, "the rows held out from the version's training (dev and test splits)"
                           if "test" in dataset else "the dev split the version was trained with")
        trained = len(data) - dev_rows
        return HeldOut(len(data), f"all rows of the dataset the version was trained on ({trained} of them "
                                  f"trained on)", trained)
    return HeldOut(len(data), "the whole dataset (not the version's training data)")


def confusion_report(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, loss, ``confusion_matrix[true][predicted]`` and per-class precision/recall/support."""
    predicted = probabilities.argmax(axis=1)
    matrix = np.bincount(labels * N_CLASSES + predicted, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, -1)
    hits = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / matrix.sum(axis=0))  # a class never predicted: 0, not NaN
        recall = np.nan_to_num(hits / matrix.sum(axis=1))
    return {"accuracy": round(float((predicted == labels).mean()), 6),
            "loss": round(cross_entropy(probabilities, labels), 6),
            "per_class": [{"class": c, "precision": round(float(precision[c]), 4),
                           "recall": round(float(recall[c]), 4), "support": int(matrix[c].sum())}
                          for c in range(N_CLASSES)],
            "confusion_matrix": matrix.tolist()}
