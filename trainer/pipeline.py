"""Data in, published version out: load, split, train, then publish with a full manifest.

The CLI and the worker's retraining job both call ``train_and_publish`` so a version made by
either carries the same manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.class_names import check_class_names
from core.datasets import Dataset, load_dataset
from core.digits import N_CLASSES
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from trainer.training import EpochReport, TrainResult, train


@dataclass
class Published:
    name: str
    version: int
    path: Path
    result: TrainResult

    def summary(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "path": str(self.path),
                "metrics": {k: round(v, 6) for k, v in self.result.metrics.items()},
                "best_epoch": self.result.best_epoch, "seconds": round(self.result.seconds, 2)}


def load_splits(data: str | Path, dev_data: str | Path | None, dev_fraction: float) -> tuple[Dataset, Dataset]:
    """(train, dev): ``dev_data`` when given, else the LAST ``dev_fraction`` of ``data`` in file order."""
    dataset = load_dataset(data)
    if dev_data is not None:
        return dataset, load_dataset(dev_data)
    return dataset.split_last(dev_fraction)


def train_and_publish(registry: ModelRegistry, name: str, data: str | Path, config: TrainConfig,
                      dev_data: str | Path | None = None, dev_fraction: float = 0.2,
                      on_epoch: Callable[[EpochReport], None] | None = None,
                      extra_manifest: dict[str, Any] | None = None,
                      class_names: Sequence[str] | None = None) -> Published:
    """Train on ``data`` and publish the result; ``class_names`` (one per class, label order) go into
    the manifest's top-level ``"class_names"``, checked before any training time is spent."""
    names = check_class_names(class_names, N_CLASSES) if class_names is not None else None
    train_set, dev_set = load_splits(data, dev_data, dev_fraction)
    result = train(train_set, dev_set, config, on_epoch)
    manifest = {
        "hyperparameters": config.model_dump(),
        "dataset": {"train": {"source": train_set.source, "sha256": train_set.digest, "rows": len(train_set)},
                    "dev": {"source": dev_set.source, "sha256": dev_set.digest, "rows": len(dev_set),
                            "split": "file" if dev_data is not None else f"last {dev_fraction:g} of rows"}},
        "metrics": result.metrics,
        "best_epoch": result.best_epoch,
        "training_seconds": round(result.seconds, 3),
        "curve": result.curve,
        **(extra_manifest or {}),
    }
    if names is not None:
        manifest["class_names"] = names
    version = registry.publish_version(name, result.model.network, manifest, result.model.scaling)
    result.model.name, result.model.version = name, version
    return Published(name, version, registry.version_dir(name, version), result)
