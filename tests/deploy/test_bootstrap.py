"""``python -m trainer.bootstrap``: first model from the user's data or a verified download, else a clear error.

Downloads are tested against a real HTTP mirror on 127.0.0.1 (python's http.server) serving
MNIST's t10k files under the training files' names.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.datasets import Dataset
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from tests.support import REPO_ROOT, free_port

# The MLP, small: these tests are about finding data; the first model's own flags are tested below.
TINY = ("--preset default --epochs 2 --hidden 32 --dropout 0 --augment-shift 0 --early-stopping 0 "
        "--lr-schedule constant --seed 3")


def run_bootstrap(tmp_path: Path, models: Path, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "MODELS_DIR": str(models), "DATA_DIR": str(data), "TRAIN_ARGS": TINY,
                "MNIST_URLS": "none", "DOWNLOAD_TIMEOUT": "10", **env}
    return subprocess.run([sys.executable, "-m", "trainer.bootstrap"], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture()
def mirror_files(tmp_path: Path, mnist_dir: Path) -> Path:
    """A folder laid out like an MNIST mirror: t10k files renamed to the training files' names."""
    root = tmp_path / "mirror"
    root.mkdir()
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", root / "train-images-idx3-ubyte.gz")
    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", root / "train-labels-idx1-ubyte.gz")
    return root


def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output readable
        pass


@pytest.fixture()
def good_mirror(mirror_files: Path) -> Iterator[str]:
    yield from serve(mirror_files)


@pytest.fixture()
def tampered_mirror(tmp_path: Path, mirror_files: Path) -> Iterator[str]:
    """Same names, one byte flipped in each file: a corrupted or malicious mirror."""
    root = tmp_path / "tampered"
    shutil.copytree(mirror_files, root)
    for path in root.iterdir():
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    yield from serve(root)


def t10k_digests(mnist_dir: Path) -> str:
    """MNIST_SHA256 for a mirror serving t10k under train names, from the data folder's SHA256SUMS."""
    sums = dict(reversed(line.split()) for line in (mnist_dir / "SHA256SUMS").read_text().splitlines() if line)
    for name, digest in sums.items():  # the published digests are what the files really hash to
        assert hashlib.sha256((mnist_dir / name).read_bytes()).hexdigest() == digest
    return (f"train-images-idx3-ubyte.gz={sums['t10k-images-idx3-ubyte.gz']} "
            f"train-labels-idx1-ubyte.gz={sums['t10k-labels-idx1-ubyte.gz']}")


def published(models: Path) -> tuple[list[int], dict]:
    registry = ModelRegistry(models)
    versions = registry.versions("mnist")
    return versions, registry.manifest("mnist", versions[-1]) if versions else {}


def test_existing_model_is_left_alone(tmp_path: Path, models_dir: Path) -> None:
    before = ModelRegistry(models_dir).versions("mnist")
    result = run_bootstrap(tmp_path, models_dir, tmp_path / "no-data")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stderr
    assert ModelRegistry(models_dir).versions("mnist") == before


def test_trains_from_idx_files_in_data_dir(tmp_path: Path, mnist_dir: Path) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    shutil.copytree(mnist_dir, data / "mnist")  # IDX files one folder below DATA_DIR
    # TRAIN_ARGS shortens the first model, which is otherwise the CNN preset's
    result = run_bootstrap(tmp_path, models, data, TRAIN_ARGS="--epochs 2 --seed 3")
    assert result.returncode == 0, result.stderr
    versions, manifest = published(models)
    assert versions == [1]
    assert ModelRegistry(models).aliases("mnist") == {"production": 1}
    assert manifest["dataset"]["train"]["source"].startswith(str(data / "mnist"))
    hyperparameters = manifest["hyperparameters"]
    assert hyperparameters == {**TrainConfig.for_preset("cnn").model_dump(), "epochs": 2, "seed": 3}
    assert manifest["metrics"]["dev_accuracy"] > 0.9 and manifest["metrics"]["test_accuracy"] > 0.9
    assert json.loads(result.stdout.strip().splitlines()[-1])["version"] == 1
    # a second run finds the model and does not train again
    again = run_bootstrap(tmp_path, models, data)
    assert again.returncode == 0 and published(models)[0] == [1]


def test_kaggle_train_csv_wins(tmp_path: Path, mnist: Dataset, mnist_dir: Path) -> None:
    data = tmp_path / "data"
    (data / "idx").mkdir(parents=True)
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", data / "idx")
    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", data / "idx")
    rows = np.column_stack([mnist.y[:1500], mnist.X[:1500].astype(np.int64)])
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    np.savetxt(data / "train.csv", rows, fmt="%d", delimiter=",", header=header, comments="")
    models = tmp_path / "models"
    result = run_bootstrap(tmp_path, models, data)
    assert result.returncode == 0, result.stderr
    versions, manifest = published(models)
    assert versions == [1]
    assert manifest["dataset"]["train"]["source"] == str(data / "train.csv")
    splits = manifest["dataset"]
    assert splits["train"]["rows"] + splits["dev"]["rows"] + splits["test"]["rows"] == 1500


def test_no_data_and_no_download_says_what_to_put_where(tmp_path: Path) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    data.mkdir()
    result = run_bootstrap(tmp_path, models, data)
    assert result.returncode == 2
    assert f"data folder {data}" in result.stderr
    assert "train.csv" in result.stderr and "train-images-idx3-ubyte" in result.stderr
    assert "t10k-images-idx3-ubyte" in result.stderr  # every accepted layout is listed
    assert "MNIST_URLS" in result.stderr
    assert published(models)[0] == []


def test_download_from_local_mirror_skips_a_tampered_one(tmp_path: Path, mnist_dir: Path, tampered_mirror: str,
                                                         good_mirror: str) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    data.mkdir()
    dead = f"http://127.0.0.1:{free_port()}/"
    result = run_bootstrap(tmp_path, models, data, MNIST_URLS=f"{dead},{tampered_mirror} {good_mirror}",
                           MNIST_SHA256=t10k_digests(mnist_dir))
    assert result.returncode == 0, result.stderr
    assert "SHA-256 mismatch" in result.stderr  # the tampered mirror was tried and refused
    downloads = data / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == ["train-images-idx3-ubyte.gz",
                                                            "train-labels-idx1-ubyte.gz"]
    for name in ("images-idx3", "labels-idx1"):
        assert (downloads / f"train-{name}-ubyte.gz").read_bytes() == (mnist_dir / f"t10k-{name}-ubyte.gz").read_bytes()
    versions, manifest = published(models)
    assert versions == [1]
    assert manifest["dataset"]["train"]["source"].startswith(str(downloads))


def test_digest_mismatch_is_refused(tmp_path: Path, good_mirror: str) -> None:
    """The canonical train digests do not match t10k bytes: nothing is kept, nothing is trained."""
    models, data = tmp_path / "models", tmp_path / "data"
    data.mkdir()
    result = run_bootstrap(tmp_path, models, data, MNIST_URLS=good_mirror)
    assert result.returncode == 2
    assert result.stderr.count("refused: SHA-256 mismatch") == 2  # one per file, each logged once
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in result.stderr
    assert list((data / "downloads").iterdir()) == []  # no partial or unverified file left behind
    assert published(models)[0] == []


def test_bad_digest_setting_is_reported(tmp_path: Path) -> None:
    result = run_bootstrap(tmp_path, tmp_path / "models", tmp_path / "data", MNIST_SHA256="train-images=abc")
    assert result.returncode == 2
    assert "MNIST_SHA256" in result.stderr and "train-images=abc" in result.stderr


def test_mirror_list_setting() -> None:
    from trainer.bootstrap import DEFAULT_MIRRORS, BootstrapSettings

    assert BootstrapSettings(mnist_urls="").mirrors() == list(DEFAULT_MIRRORS)  # compose passes "" when unset
    assert BootstrapSettings(mnist_urls="none").mirrors() == []
    assert BootstrapSettings(mnist_urls="http://a/x, http://b/y/").mirrors() == ["http://a/x/", "http://b/y/"]


def test_a_missing_data_folder_is_named_and_nothing_is_created(tmp_path: Path, good_mirror: str) -> None:
    """A typo in DATA_DIR: said as such, no downloads/ folder appears, no mirror is asked."""
    typo = tmp_path / "shared" / "data" / "mnst"
    result = run_bootstrap(tmp_path, tmp_path / "models", typo, MNIST_URLS=good_mirror)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert f"the data folder {typo} (DATA_DIR) does not exist" in first
    for layout in ("train.csv", "train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert layout in result.stderr
    assert "downloading" not in result.stderr
    assert not typo.exists() and not typo.parent.exists()


def test_mnist_train_files_win_over_the_shipped_t10k(tmp_path: Path, mnist_dir: Path, mirror_files: Path) -> None:
    """data/ ships t10k; the user's 60,000-digit train-* pair one folder below is what trains."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, data / name)
    shutil.copytree(mirror_files, data / "full")  # train-* names
    (data / "half").mkdir()  # an images file without its labels is no candidate
    shutil.copy(mnist_dir / "t10k-images-idx3-ubyte.gz", data / "half" / "train-images-idx3-ubyte.gz")
    models = tmp_path / "models"
    result = run_bootstrap(tmp_path, models, data)
    assert result.returncode == 0, result.stderr
    assert published(models)[1]["dataset"]["train"]["source"] == str(data / "full" / "train-images-idx3-ubyte.gz")


def test_the_shipped_data_folder_trains_a_first_model(tmp_path: Path) -> None:
    """The repository's data/ (make run's and compose's default) is enough on its own, offline."""
    models = tmp_path / "models"
    result = run_bootstrap(tmp_path, models, REPO_ROOT / "data")
    assert result.returncode == 0, result.stderr
    plan = next(line for line in result.stderr.splitlines() if "training the first" in line)
    assert "10,000 digits" in plan and "each epoch is logged" in plan
    assert published(models)[1]["metrics"]["dev_accuracy"] > 0.8
    assert not (REPO_ROOT / "data" / "downloads").exists()


def test_training_plan_says_about_how_long(mnist_dir: Path) -> None:
    from trainer.bootstrap import training_plan

    plan = training_plan(mnist_dir, "mnist", "")
    assert "10,000 digits" in plan and "about " in plan and "on two idle cores" in plan
    assert "TRAIN_ARGS='--epochs 3'" in training_plan(mnist_dir, "mnist", "--epochs 3")


def test_a_bad_setting_is_said_first_and_short(tmp_path: Path) -> None:
    """Not pydantic's report that repeats every input value: the variable and what is wrong."""
    for env in ({"MAX_INSTANCES": "many"}, {"DOWNLOAD_TIMEOUT": "soon"}):
        result = run_bootstrap(tmp_path, tmp_path / "models", tmp_path, **env)
        assert result.returncode == 2
        name = next(iter(env))
        assert result.stderr.startswith(f"[bootstrap] error: invalid setting {name}: "), result.stderr
        assert "input_value" not in result.stderr and len(result.stderr.splitlines()[0]) < 160
