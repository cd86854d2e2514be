"""Evaluation of a model on labelled data: accuracy, loss, per-class precision/recall, confusion."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.digits import Dataset
from core.evaluation import confusion_report
from core.model import Model


def evaluate(model: Model, dataset: Dataset) -> dict[str, Any]:
    """``core.evaluation.confusion_report`` of ``model`` on every row of ``dataset``, with what was scored."""
    if dataset.y is None:
        raise ValueError(f"{dataset.source}: evaluation needs labels")
    report = confusion_report(np.asarray(dataset.y, dtype=np.int64), model.predict_proba(dataset.X))
    return {"n": len(dataset), **report, "model": model.name, "version": model.version, "data": dataset.source}


def format_report(report: dict[str, Any]) -> str:
    """A human-readable evaluation report for the terminal."""
    scored = f"{report['data']}" + (f", {report['split']}" if report.get("split") else "")
    lines = [f"{report['model']} v{report['version']} on {scored}: "
             f"accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f}, n={report['n']}",
             "class  precision  recall  support"]
    lines += [f"{row['class']:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['support']:>7}"
              for row in report["per_class"]]
    lines.append("confusion matrix (rows: true label, columns: predicted)")
    lines += ["  " + " ".join(f"{count:>5}" for count in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)
