"""Evaluation of a model on labelled data: accuracy, loss, per-class precision/recall, confusion."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.digits import N_CLASSES, Dataset
from core.model import Model
from core.network import cross_entropy


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``matrix[true, predicted]`` counts, built with one bincount."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def evaluate(model: Model, dataset: Dataset) -> dict[str, Any]:
    if dataset.y is None:
        raise ValueError(f"{dataset.source}: evaluation needs labels")
    probabilities = model.predict_proba(dataset.X)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(dataset.y, predicted)
    true_positives = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(true_positives / matrix.sum(axis=0))
        recall = np.nan_to_num(true_positives / matrix.sum(axis=1))
    return {
        "n": len(dataset),
        "accuracy": float((predicted == dataset.y).mean()),
        "loss": cross_entropy(probabilities, dataset.y),
        "per_class": [{"class": c, "precision": round(float(precision[c]), 4), "recall": round(float(recall[c]), 4),
                       "support": int(matrix[c].sum())} for c in range(N_CLASSES)],
        "confusion_matrix": matrix.tolist(),
        "model": model.name,
        "version": model.version,
        "data": dataset.source,
    }


def format_report(report: dict[str, Any]) -> str:
    """A human-readable evaluation report for the terminal."""
    lines = [f"{report['model']} v{report['version']} on {report['data']}: "
             f"accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f}, n={report['n']}",
             "class  precision  recall  support"]
    lines += [f"{row['class']:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['support']:>7}"
              for row in report["per_class"]]
    lines.append("confusion matrix (rows: true label, columns: predicted)")
    lines += ["  " + " ".join(f"{count:>5}" for count in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)
