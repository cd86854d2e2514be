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
from core.evaluation import confusion_report
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


# The share of all rows, taken from the end of the held-out tail, that training never looks at:
# not for early stopping, not for choosing hyper-parameters. The dev figure is tuned on; this one is not.
TEST_FRACTION = 0.1


def load_splits(data: str | Path, dev_data: str | Path | None, dev_fraction: float) -> tuple[Dataset, Dataset]:
    """(train, held out): ``dev_data`` when given, else the LAST ``dev_fraction`` of ``data`` in file order."""
    dataset = load_dataset(data)
    if dev_data is not None:
        return dataset, load_dataset(dev_data)
    return dataset.split_last(dev_fraction)


def split_test(held_out: Dataset, total_rows: int, test_fraction: float) -> tuple[Dataset, Dataset | None]:
    """(dev, test): the last ``test_fraction`` of all ``total_rows`` becomes the test split when the
    held-out rows can spare it and keep a dev row; otherwise every held-out row is dev and there is no test."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test fraction must be at least 0 and below 1, got {test_fraction}")
    n_test = round(total_rows * test_fraction)
    if n_test < 1 or n_test >= len(held_out) or held_out.y is None:
        return held_out, None
    cut = len(held_out) - n_test
    base = held_out.source.split(" (", 1)[0]
    return (Dataset(held_out.X[:cut], held_out.y[:cut], f"{base} (last {len(held_out)}, first {cut} of them)",
                    held_out.digest),
            Dataset(held_out.X[cut:], held_out.y[cut:], f"{base} (last {n_test})", held_out.digest))


def dev_split(data: str | Path, dev_fraction: float, test_fraction: float = TEST_FRACTION) -> Dataset:
    """The dev rows ``train_and_publish`` reports on for ``data`` without a dev dataset: the held-out
    tail without its test split. The retraining job's promotion gate scores production on them."""
    train_set, held_set = load_splits(data, None, dev_fraction)
    return split_test(held_set, len(train_set) + len(held_set), test_fraction)[0]


def train_and_publish(registry: ModelRegistry, name: str, data: str | Path, config: TrainConfig,
                      dev_data: str | Path | None = None, dev_fraction: float = 0.2,
                      on_epoch: Callable[[EpochReport], None] | None = None,
                      extra_manifest: dict[str, Any] | None = None,
                      class_names: Sequence[str] | None = None,
                      test_fraction: float = TEST_FRACTION) -> Published:
    """Train on ``data`` and publish the result; ``class_names`` (one per class, label order) go into
    the manifest's top-level ``"class_names"``, checked before any training time is spent.

    Without ``dev_data`` the held-out tail (``dev_fraction`` of the rows) is dev, then test (its last
    ``test_fraction`` of all rows, see ``split_test``): the test figure and its confusion matrix go
    into the manifest as ``metrics.test_accuracy`` and ``test``."""
    names = check_class_names(class_names, N_CLASSES) if class_names is not None else None
    train_set, held_set = load_splits(data, dev_data, dev_fraction)
    dev_set, test_set = (held_set, None) if dev_data is not None else \
        split_test(held_set, len(train_set) + len(held_set), test_fraction)
    result = train(train_set, dev_set, config, on_epoch)
    datasets = {"train": {"source": train_set.source, "sha256": train_set.digest, "rows": len(train_set)},
                "dev": {"source": dev_set.source, "sha256": dev_set.digest, "rows": len(dev_set),
                        "split": "file" if dev_data is not None else f"last {dev_fraction:g} of rows"}}
    test_report: dict[str, Any] = {}
    if test_set is not None:
        datasets["test"] = {"source": test_set.source, "sha256": test_set.digest, "rows": len(test_set),
                            "split": f"last {test_fraction:g} of rows"}
        datasets["dev"]["split"] += f", without the test split's last {len(test_set)}"
        test_report = confusion_report(test_set.y, result.model.predict_proba(test_set.X))
        result.metrics["test_loss"], result.metrics["test_accuracy"] = test_report["loss"], test_report["accuracy"]
    manifest = {
        "hyperparameters": config.model_dump(),
        "dataset": datasets,
        "metrics": result.metrics,
        **({"test": test_report} if test_report else {}),
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
