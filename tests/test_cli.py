"""``python -m trainer`` through a real subprocess: JSON last lines, progress on stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.datasets import load_kaggle_csv
from core.registry import ModelRegistry
from core.settings import Settings
from core.training_config import TrainConfig
from tests.support import REPO_ROOT
from trainer.cli import CONFIG_FIELDS, build_parser, cmd_train_config

SMALL = ["--hidden", "32", "--epochs", "2", "--dropout", "0", "--augment-shift", "0", "--early-stopping", "0",
         "--seed", "4"]


def run_trainer(*args: str | Path, expect: int = 0) -> tuple[dict[str, Any], str]:
    """Run the CLI; returns (the JSON object on stdout's last line, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODELS_DIR", "MODEL_NAME")}
    proc = subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    last_line = proc.stdout.strip().splitlines()[-1]
    return json.loads(last_line), proc.stderr


def test_train_then_evaluate_and_manage_versions(tmp_path: Path, mnist_dir: Path) -> None:
    models = tmp_path / "models"
    trained, stderr = run_trainer("train", "--data", mnist_dir, "--models-dir", models, *SMALL, "--json")
    assert trained["model"] == "mnist" and trained["version"] == 1
    assert trained["path"] == str(models / "mnist" / "1")
    metrics = trained["metrics"]
    assert {"dev_accuracy", "dev_loss", "train_accuracy", "test_accuracy", "test_loss"} <= set(metrics)
    assert metrics["dev_accuracy"] > 0.85 and metrics["test_accuracy"] > 0.8  # the t10k file's last rows are harder
    assert "epoch   1/2" in stderr and "epoch   2/2" in stderr and "dev loss" in stderr  # progress on stderr
    assert "published mnist version 1" in stderr and f"test accuracy {metrics['test_accuracy']:.4f}" in stderr

    # The file it trained on: by default only the rows held out from training (the last 2,000: the dev
    # split, then the test split), whose accuracy is the mean of the two the manifest records;
    # --all-rows scores every row and says how many it trained on.
    evaluated, stderr = run_trainer("evaluate", "--models-dir", models, "--data", mnist_dir, "--json")
    assert evaluated["n"] == 2_000 and evaluated["version"] == 1 and evaluated["trained_rows"] == 0
    assert evaluated["split"] == "the rows held out from the version's training (dev and test splits)"
    assert evaluated["accuracy"] == pytest.approx((metrics["dev_accuracy"] + metrics["test_accuracy"]) / 2, abs=1e-4)
    assert evaluated["loss"] > 0 and len(evaluated["confusion_matrix"]) == 10 and len(evaluated["per_class"]) == 10
    assert "confusion matrix" in stderr and "dev and test splits" in stderr and "warning" not in stderr
    everything, stderr = run_trainer("evaluate", "--models-dir", models, "--data", mnist_dir, "--all-rows", "--json")
    assert everything["n"] == 10_000 and everything["trained_rows"] == 8_000
    assert "warning: 8000 of these 10000 rows were training rows of mnist v1" in stderr

    second, _ = run_trainer("train", "--data", mnist_dir, "--models-dir", models, "--model", "mnist",
                            "--dev-fraction", "0.1", *SMALL, "--json")
    assert second["version"] == 2
    # 1,000 rows held out, and the test split (10% of the rows) would take them all: dev only.
    second_data = ModelRegistry(models).manifest("mnist", 2)["dataset"]
    assert second_data["dev"]["rows"] == 1000 and "test" not in second_data

    listed, _ = run_trainer("models", "list", "--models-dir", models, "--json")
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert listed["aliases"] == {"production": 1} and listed["versions"][0]["aliases"] == ["production"]
    assert listed["versions"][1]["dev_accuracy"] == pytest.approx(second["metrics"]["dev_accuracy"], abs=1e-6)
    assert [v["test_accuracy"] for v in listed["versions"]] == [metrics["test_accuracy"], None]

    shown, _ = run_trainer("models", "show", "2", "--models-dir", models, "--json")
    assert shown["version"] == 2 and shown["hyperparameters"]["hidden"] == [32]
    assert len(shown["weights_sha256"]) == 64

    promoted, stderr = run_trainer("models", "promote", "2", "--models-dir", models, "--json")
    assert promoted == {"model": "mnist", "aliases": {"production": 2}}
    assert "production -> version 2" in stderr
    staged, _ = run_trainer("models", "promote", "1", "--alias", "staging", "--models-dir", models, "--json")
    assert staged["aliases"] == {"production": 2, "staging": 1}
    by_alias, _ = run_trainer("evaluate", "--models-dir", models, "--alias", "staging", "--data", mnist_dir, "--json")
    assert by_alias["version"] == 1 and by_alias["accuracy"] == pytest.approx(evaluated["accuracy"])


def test_errors_exit_2_with_a_message(tmp_path: Path, mnist_dir: Path) -> None:
    models = tmp_path / "models"
    error, stderr = run_trainer("train", "--data", tmp_path / "missing", "--models-dir", models, "--json", expect=2)
    assert error == {"error": f"{tmp_path / 'missing'}: no such file or directory"}
    assert stderr.startswith("error: ")

    bad_csv = tmp_path / "train.csv"
    bad_csv.write_text("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n3," + ",".join(["0"] * 783) + ",x\n")
    error, _ = run_trainer("train", "--data", bad_csv, "--models-dir", models, "--json", expect=2)
    assert error["error"] == f"{bad_csv}: line 2, column 785 (pixel783): 'x' is not a number"

    error, _ = run_trainer("train", "--data", mnist_dir, "--models-dir", models, "--dropout", "1.5", "--json",
                           expect=2)
    assert error["error"].startswith("invalid training configuration: dropout: Input should be less than 1")
    assert not models.exists() or ModelRegistry(models).versions("mnist") == []

    error, _ = run_trainer("evaluate", "--models-dir", models, "--data", mnist_dir, "--json", expect=2)
    assert error == {"error": "no model 'mnist' has been published yet"}
    run_trainer("train", "--data", mnist_dir, "--models-dir", models, *SMALL, "--epochs", "1", "--json")
    error, _ = run_trainer("models", "promote", "5", "--models-dir", models, "--json", expect=2)
    assert error == {"error": "model 'mnist' has no version 5 (available: 1)"}
    error, _ = run_trainer("models", "promote", "1", "--alias", "not valid", "--models-dir", models, "--json",
                           expect=2)
    assert "invalid alias 'not valid'" in error["error"]
    error, _ = run_trainer("models", "show", "3", "--models-dir", models, "--json", expect=2)
    assert error == {"error": "model 'mnist' has no version 3"}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainer", "train", "--models-dir", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--data" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "trainer", "train", "--data", "x", "--optimizer", "rmsprop"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'rmsprop'" in proc.stderr


@pytest.mark.parametrize("fmt", ["csv", "train-csv", "v1-json"])
def test_export_writes_request_bodies_that_read_back_as_the_same_digits(tmp_path: Path, mnist_dir: Path, mnist,
                                                                        fmt: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainer", "export", "--data", str(mnist_dir), "--start", "9990",
                           "--rows", "25", "--format", fmt], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 10 rows" in proc.stderr  # only 10 rows are left after 9990
    if fmt == "v1-json":
        instances = json.loads(proc.stdout)["instances"]
        assert instances == mnist.X[9990:].astype(int).tolist()
        return
    path = tmp_path / "rows.csv"
    path.write_text(proc.stdout)
    exported = load_kaggle_csv(path, require_label=fmt == "train-csv")
    assert np.array_equal(exported.X, mnist.X[9990:])
    if fmt == "train-csv":
        assert np.array_equal(exported.y, mnist.y[9990:])


def test_export_refuses_a_start_past_the_end(mnist_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainer", "export", "--data", str(mnist_dir), "--start", "10000"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--start 10000 is outside the dataset's 10000 rows" in proc.stderr


def test_promote_refuses_a_version_that_does_not_load(models_dir: Path) -> None:
    weights = models_dir / "mnist" / "2" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)  # same size, wrong digest
    error, stderr = run_trainer("models", "promote", "2", "--models-dir", models_dir, "--json", expect=2)
    assert error["error"].startswith("cannot point 'production' at version 2: model 'mnist' version 2: "
                                     "weights.npz has sha256")
    assert stderr.startswith("error: cannot point 'production'")
    assert ModelRegistry(models_dir).aliases("mnist") == {"production": 1}  # nothing was written
    error, _ = run_trainer("models", "promote", "1", "--alias", "stagé", "--models-dir", models_dir, "--json",
                           expect=2)
    assert error["error"].startswith("invalid alias 'stagé': use 1-64 ASCII letters")


def test_train_flags_are_generated_from_train_config() -> None:
    """Every TrainConfig field (but the preset) has its flag, typed like the field, with its choices."""
    assert set(CONFIG_FIELDS) == set(TrainConfig.model_fields) - {"preset"}
    args = build_parser(Settings()).parse_args([
        "train", "--data", "x", "--hidden", "256", "128", "--optimizer", "momentum", "--lr", "0.5",
        "--lr-schedule", "inverse", "--lr-decay", "0.01", "--momentum", "0.8", "--weight-decay", "0.001",
        "--dropout", "0.1", "--epochs", "7", "--batch-size", "0", "--augment-shift", "1", "--early-stopping", "3",
        "--init", "uniform", "--seed", "9"])
    assert cmd_train_config(args) == TrainConfig(
        hidden=[256, 128], optimizer="momentum", lr=0.5, lr_schedule="inverse", lr_decay=0.01, momentum=0.8,
        weight_decay=0.001, dropout=0.1, epochs=7, batch_size=0, augment_shift=1, early_stopping=3, init="uniform",
        seed=9)
    # not given: the preset decides
    assert cmd_train_config(build_parser(Settings()).parse_args(["train", "--data", "x", "--preset", "seed"])) == \
        TrainConfig.for_preset("seed")
    with pytest.raises(SystemExit):
        build_parser(Settings()).parse_args(["train", "--data", "x", "--optimizer", "rmsprop"])


def test_a_long_run_logs_a_summary_of_its_epochs(tmp_path: Path, mnist_dir: Path) -> None:
    """The seed preset's 500 full-batch steps would print 500 lines: a long run logs about 25 and the last."""
    trained, stderr = run_trainer("train", "--data", mnist_dir, "--models-dir", tmp_path, "--preset", "seed",
                                  "--epochs", "120", "--json")
    epochs = [int(line.split()[1].split("/")[0]) for line in stderr.splitlines() if line.startswith("epoch ")]
    assert epochs == [1, *range(5, 121, 5)], stderr
    assert "(logging every 5th epoch of 120, and the last)" in stderr and trained["version"] == 1


def test_export_png_is_a_scan_the_api_reads_back_as_the_digit(tmp_path: Path, mnist_dir: Path, mnist) -> None:
    """docs/api.md's seven.png: dark ink on white, 4x MNIST's size; the API's image path inverts, crops
    and centres it back into nearly the digit it came from."""
    from service.codecs.images import image_to_pixels

    target = tmp_path / "seven.png"
    with open(target, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "trainer", "export", "--data", str(mnist_dir), "--format", "png"],
                              cwd=REPO_ROOT, stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG") and "wrote row 0 as png" in proc.stderr
    seen = image_to_pixels(data).reshape(-1)
    original = mnist.X[0].astype(float)
    assert mnist.y[0] == 7 and np.corrcoef(seen, original)[0, 1] > 0.8
