"""The test split: the end of the held-out rows, which training never looks at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.datasets import Dataset
from core.evaluation import held_out
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from trainer.pipeline import split_test, train_and_publish

SMALL = dict(hidden=[16], epochs=2, augment_shift=0, early_stopping=0)


def test_the_test_split_is_the_end_of_the_held_out_rows(mnist: Dataset) -> None:
    train_set, held = mnist.split_last(0.2)
    dev, test = split_test(held, len(mnist), 0.1)
    assert (len(train_set), len(dev), len(test)) == (8000, 1000, 1000)
    np.testing.assert_array_equal(test.X, mnist.X[9000:])
    np.testing.assert_array_equal(dev.y, mnist.y[8000:9000])
    assert split_test(held, len(mnist), 0.0) == (held, None)
    assert split_test(held, len(mnist), 0.2)[1] is None  # no dev row would be left
    with pytest.raises(ValueError, match="test fraction"):
        split_test(held, len(mnist), -0.1)


def test_publish_records_the_test_split_and_evaluation_holds_out_dev_and_test(tmp_path: Path, mnist_dir: Path,
                                                                             mnist: Dataset) -> None:
    registry = ModelRegistry(tmp_path / "models")
    published = train_and_publish(registry, "mnist", mnist_dir, TrainConfig(**SMALL))
    manifest = registry.manifest("mnist", published.version)
    assert manifest["dataset"]["dev"]["rows"] == 1000 and manifest["dataset"]["test"]["rows"] == 1000
    assert manifest["dataset"]["test"]["split"] == "last 0.1 of rows"
    test = manifest["test"]
    assert sum(map(sum, test["confusion_matrix"])) == 1000
    assert manifest["metrics"]["test_accuracy"] == test["accuracy"]
    predicted = published.result.model.predict(mnist.X[9000:])[0]
    assert test["accuracy"] == pytest.approx(float((predicted == mnist.y[9000:]).mean()), abs=1e-6)
    # Scoring the training file again holds out both splits (2,000 rows), and says so.
    chosen = held_out(manifest, mnist)
    assert chosen.rows == 2000 and "dev and test" in chosen.split and chosen.trained_rows == 0
