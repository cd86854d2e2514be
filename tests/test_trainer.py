"""The training loop on real MNIST digits, presets, early stopping, augmentation and evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.datasets import Dataset
from core.evaluation import confusion_report
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from trainer.augment import random_shift
from trainer.class_names import load_class_names
from trainer.cli import main
from trainer.evaluation import evaluate, format_report
from trainer.pipeline import train_and_publish
from trainer.training import EpochReport, TrainingCanceled, train


@pytest.fixture(scope="module")
def splits(mnist: Dataset) -> tuple[Dataset, Dataset]:
    """The issue's split: train on the first 8,000 digits, report on the last 2,000."""
    return mnist.split_last(0.2)


def test_small_run_beats_90_percent_on_real_digits(splits: tuple[Dataset, Dataset]) -> None:
    train_set, dev_set = splits
    config = TrainConfig(hidden=[64], epochs=3, dropout=0.0, augment_shift=0, early_stopping=0, seed=0)
    reports: list[EpochReport] = []
    result = train(train_set, dev_set, config, on_epoch=reports.append)
    assert result.metrics["dev_accuracy"] > 0.90
    assert result.metrics["train_accuracy"] > result.metrics["dev_accuracy"] - 0.05
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert reports[-1].train_loss < reports[0].train_loss
    assert result.curve == [r.as_dict() for r in reports]
    assert result.model.network.architecture()[0] == {"type": "dense", "n_inputs": 784, "n_neurons": 64}
    # The returned model takes raw 0..255 pixels: its own dev accuracy matches the reported one.
    predicted = result.model.predict(dev_set.X)[0]
    assert float((predicted == dev_set.y).mean()) == pytest.approx(result.metrics["dev_accuracy"])


def test_seed_preset_reproduces_the_tutorial_network(splits: tuple[Dataset, Dataset]) -> None:
    config = TrainConfig.for_preset("seed")
    assert (config.hidden, config.optimizer, config.lr, config.lr_schedule, config.epochs, config.batch_size,
            config.init, config.dropout, config.augment_shift, config.early_stopping, config.weight_decay) == (
        [10], "gd", 0.1, "constant", 500, 0, "uniform", 0.0, 0, 0, 0.0)
    assert TrainConfig.for_preset("seed", seed=3, epochs=None).seed == 3  # unset CLI flags do not override
    result = train(*splits, config)
    specs = result.model.network.architecture()
    assert specs == [{"type": "dense", "n_inputs": 784, "n_neurons": 10}, {"type": "relu"},
                     {"type": "dense", "n_inputs": 10, "n_neurons": 10}]
    assert result.model.scaling.scale == pytest.approx(1 / 255) and result.model.scaling.offset == 0
    assert len(result.curve) == 500  # 500 full-batch iterations, one per "epoch"
    assert all(point["learning_rate"] == 0.1 for point in result.curve)
    assert 0.80 <= result.metrics["dev_accuracy"] <= 0.90, result.metrics


@pytest.mark.slow
def test_default_configuration_reaches_97_5_percent(splits: tuple[Dataset, Dataset]) -> None:
    result = train(*splits, TrainConfig())
    assert result.metrics["dev_accuracy"] >= 0.975, result.metrics
    # Early stopping keeps the best epoch: the final dev loss is that epoch's, not the last one's.
    best = result.curve[result.best_epoch - 1]
    assert result.metrics["dev_loss"] == pytest.approx(best["dev_loss"], abs=1e-5)
    assert best["dev_loss"] == pytest.approx(min(point["dev_loss"] for point in result.curve), abs=1e-9)


def test_early_stopping_restores_the_best_epoch(splits: tuple[Dataset, Dataset]) -> None:
    train_set, dev_set = splits
    # A learning rate this high makes dev loss rise after the first epochs; patience 2 stops it.
    config = TrainConfig(hidden=[32], optimizer="momentum", lr=0.5, lr_schedule="constant", epochs=30,
                         dropout=0.0, augment_shift=0, early_stopping=2, seed=0)
    result = train(Dataset(train_set.X[:2000], train_set.y[:2000], "head", "x"), dev_set, config)
    losses = [point["dev_loss"] for point in result.curve]
    assert len(result.curve) < 30
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert len(result.curve) == result.best_epoch + 2
    assert result.metrics["dev_loss"] == pytest.approx(min(losses), abs=1e-5)


def test_on_epoch_can_cancel(splits: tuple[Dataset, Dataset]) -> None:
    def cancel(report: EpochReport) -> None:
        if report.epoch == 2:
            raise TrainingCanceled("stop")

    config = TrainConfig(hidden=[16], epochs=5, augment_shift=0)
    with pytest.raises(TrainingCanceled):
        train(Dataset(splits[0].X[:500], splits[0].y[:500], "s", "x"), splits[1], config, on_epoch=cancel)


def test_training_without_labels_is_refused(splits: tuple[Dataset, Dataset]) -> None:
    with pytest.raises(ValueError, match="training data has no labels"):
        train(Dataset(splits[0].X[:10], None, "s", "x"), None, TrainConfig(epochs=1))


def test_random_shift_moves_each_image_by_at_most_max_shift() -> None:
    rng = np.random.default_rng(0)
    images = np.zeros((200, 28, 28), dtype=np.float32)
    images[:, 14, 14] = 1.0  # one lit pixel in the centre of each image
    shifted = random_shift(images.reshape(200, 784), 2, rng).reshape(200, 28, 28)
    assert shifted.dtype == np.float32 and shifted.shape == (200, 28, 28)
    rows, cols = np.nonzero(shifted.sum(axis=0) > 0)
    assert rows.min() == 12 and rows.max() == 16 and cols.min() == 12 and cols.max() == 16
    assert np.all(shifted.reshape(200, -1).sum(axis=1) == 1)  # content moves, never duplicates or vanishes
    assert len({tuple(np.argwhere(image)[0]) for image in shifted}) == 25  # all 5x5 offsets occur
    flat = images.reshape(200, 784)
    assert random_shift(flat, 0, rng) is flat


def test_random_shift_fills_with_background_at_the_edges() -> None:
    image = np.ones((1, 784), dtype=np.float32)
    shifted = random_shift(np.repeat(image, 50, axis=0), 1, np.random.default_rng(1)).reshape(50, 28, 28)
    assert set(np.unique(shifted)) == {0.0, 1.0}
    assert (shifted.sum(axis=(1, 2)) >= 27 * 27).all()


def test_confusion_matrix_and_report(splits: tuple[Dataset, Dataset]) -> None:
    labels, predicted = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    matrix = confusion_report(labels, np.eye(10)[predicted])["confusion_matrix"]
    assert [row[:3] for row in matrix[:3]] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]] and sum(map(sum, matrix)) == 6
    result = train(Dataset(splits[0].X[:1000], splits[0].y[:1000], "s", "x"), None,
                   TrainConfig(hidden=[16], epochs=2, augment_shift=0, early_stopping=0))
    report = evaluate(result.model, splits[1])
    assert report["n"] == 2000 and sum(map(sum, report["confusion_matrix"])) == 2000
    assert report["accuracy"] == pytest.approx(np.trace(np.array(report["confusion_matrix"])) / 2000)
    assert [row["support"] for row in report["per_class"]] == np.bincount(splits[1].y, minlength=10).tolist()
    assert "dev_accuracy" not in result.metrics  # no dev set given
    assert "accuracy" in format_report(report) and "confusion matrix" in format_report(report)


def test_train_and_publish_with_a_separate_dev_file(tmp_path: Path, mnist_dir: Path, mnist: Dataset) -> None:
    dev_path = tmp_path / "dev.npz"
    np.savez(dev_path, X=mnist.X[:500].reshape(500, 28, 28), y=mnist.y[:500])
    registry = ModelRegistry(tmp_path / "models")
    config = TrainConfig(hidden=[16], epochs=1, augment_shift=0, early_stopping=0)
    published = train_and_publish(registry, "mnist", mnist_dir, config, dev_data=dev_path)
    manifest = registry.manifest("mnist", published.version)
    assert manifest["dataset"]["train"]["rows"] == 10_000
    assert manifest["dataset"]["dev"] == {"source": str(dev_path), "sha256": manifest["dataset"]["dev"]["sha256"],
                                          "rows": 500, "split": "file"}
    assert published.summary()["metrics"]["dev_accuracy"] == pytest.approx(manifest["metrics"]["dev_accuracy"],
                                                                          abs=1e-6)


def test_cli_train_on_too_few_rows_exits_2_with_the_reason(mnist: Dataset, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "two.npz", X=mnist.X[:2], y=mnist.y[:2])
    code = main(["train", "--data", str(tmp_path / "two.npz"), "--models-dir", str(tmp_path / "models"),
                 "--dev-fraction", "0.8", "--epochs", "1"])
    assert code == 2
    assert "2 row(s) cannot be split into training and dev rows with dev fraction 0.8" in capsys.readouterr().err
    assert not (tmp_path / "models" / "mnist").exists() or not any((tmp_path / "models" / "mnist").iterdir())


def test_class_names_go_into_the_manifest_and_are_checked(mnist_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    tiny = ["--models-dir", str(models), "--model", "fashion", "--hidden", "8", "--epochs", "1",
            "--augment-shift", "0", "--early-stopping", "0"]
    assert main(["train", "--data", str(mnist_dir), *tiny, "--class-names", "fashion"]) == 0
    registry = ModelRegistry(models)
    manifest = registry.load("fashion").manifest
    # Label order of Fashion-MNIST's README: 7 Sneaker, 8 Bag (an earlier list had them swapped).
    assert manifest["class_names"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    # A file: one name per line (blank lines ignored) or a JSON list.
    lines = tmp_path / "names.txt"
    lines.write_text("\n".join(f"class {i}" for i in range(10)) + "\n\n")
    assert main(["train", "--data", str(mnist_dir), *tiny, "--class-names", str(lines)]) == 0
    assert registry.manifest("fashion", 2)["class_names"][9] == "class 9"
    capsys.readouterr()
    # Wrong counts, duplicates and unknown names are refused before any training, naming the problem.
    as_json = tmp_path / "nine.json"
    as_json.write_text(json.dumps([str(i) for i in range(9)]))
    duplicated = tmp_path / "dup.json"
    duplicated.write_text(json.dumps(["a"] * 2 + [str(i) for i in range(8)]))
    for value, reason in ((str(as_json), "the model has 10 classes, 9 name(s) were given"),
                          (str(duplicated), "'a' appear(s) more than once"),
                          ("shoes", "--class-names 'shoes' is neither fashion nor digits nor a readable file")):
        assert main(["train", "--data", str(mnist_dir), *tiny, "--class-names", value]) == 2
        assert reason in capsys.readouterr().err
    assert registry.versions("fashion") == [1, 2]


def test_a_manifest_without_class_names_still_loads(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).parent / "fixtures" / "mlp_registry", tmp_path / "models")
    model = ModelRegistry(tmp_path / "models").load("digits")
    assert "class_names" not in model.manifest
    assert model.predict(np.zeros((2, 784), np.float32))[1].shape == (2, 10)
    assert load_class_names("digits") == [str(d) for d in range(10)]


def test_a_preset_named_in_a_request_supplies_the_fields_it_leaves_out() -> None:
    """A retrain job's config ``{"preset": "cnn", "epochs": 5}`` is the CNN preset for 5 epochs, as the
    CLI's ``--preset cnn --epochs 5`` is (it used to be the default MLP with a "cnn" label)."""
    config = TrainConfig.model_validate({"preset": "cnn", "epochs": 5})
    assert (config.arch, config.channels, config.hidden, config.epochs, config.early_stopping) == (
        "cnn", [8, 32], [128], 5, 0)
    assert config == TrainConfig.for_preset("cnn", epochs=5)
    assert TrainConfig.model_validate(config.model_dump()) == config  # as a manifest stores and reloads it
    assert TrainConfig.model_validate({"preset": "seed", "hidden": [32]}).optimizer == "gd"
    assert TrainConfig.model_validate({"hidden": [32]}).optimizer == "adam"  # no preset: the defaults
