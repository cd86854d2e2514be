"""The model registry: numbering, atomic publish under crashes and races, digests, aliases, manifests."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import core.registry as registry_module
from core.model import InputScaling
from core.network import Network
from core.registry import (
    AliasChanged,
    CorruptVersion,
    DigestMismatch,
    InvalidName,
    ModelRegistry,
    NoModelPublished,
    PromotionRefused,
    RegistryError,
    VersionNotFound,
    check_alias,
)
from tests.support import REPO_ROOT


def small_network(seed: int = 0) -> Network:
    return Network.mlp([784, 8, 10], seed=seed)


def publish(registry: ModelRegistry, seed: int = 0, name: str = "digits") -> int:
    return registry.publish_version(name, small_network(seed), {"metrics": {"dev_accuracy": 0.5}})


def visible_entries(registry: ModelRegistry, name: str) -> list[str]:
    return sorted(p.name for p in registry.model_dir(name).iterdir() if not p.name.startswith("."))


def test_versions_count_from_one_and_first_becomes_production(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NoModelPublished, match="no model 'digits' has been published yet"):
        registry.resolve("digits")
    assert registry.versions("digits") == []
    assert [publish(registry, seed) for seed in range(3)] == [1, 2, 3]
    assert registry.versions("digits") == [1, 2, 3]
    assert registry.aliases("digits") == {"production": 1}
    assert registry.resolve("digits") == 1
    assert registry.model_names() == ["digits"]
    assert visible_entries(registry, "digits") == ["1", "2", "3", "aliases.json"]
    loaded = registry.load("digits", version=2)
    assert (loaded.name, loaded.version) == ("digits", 2)
    expected = small_network(1).arrays()["dense0_weights"]
    np.testing.assert_array_equal(loaded.network.arrays()["dense0_weights"], expected)


def test_set_alias_validation_and_resolution(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    publish(registry, 1)
    assert registry.set_alias("digits", "staging", 2) == {"production": 1, "staging": 2}
    assert registry.set_alias("digits", "production", 2) == {"production": 2, "staging": 2}
    assert registry.resolve("digits") == 2
    assert registry.resolve("digits", alias="staging") == 2
    assert registry.resolve("digits", version=1) == 1
    for bad in ("", "12", "a b", "../x", "pro/duction", "prodüction", "²", "staging\n", "x" * 65):
        with pytest.raises(InvalidName, match="invalid alias") as raised:
            registry.set_alias("digits", bad, 1)
        assert raised.value.status == 422  # bad input, never a 500
    assert check_alias("canary-2_b") == "canary-2_b" and check_alias("x" * 64) == "x" * 64
    with pytest.raises(VersionNotFound, match="model 'digits' has no version 7"):
        registry.set_alias("digits", "canary", 7)
    with pytest.raises(VersionNotFound, match=r"no alias 'canary' \(aliases: production, staging\)"):
        registry.resolve("digits", alias="canary")
    with pytest.raises(VersionNotFound, match=r"no version 9 \(available: 1, 2\)"):
        registry.resolve("digits", version=9)
    assert registry.aliases("digits") == {"production": 2, "staging": 2}  # refused changes left no trace
    for bad_name in ("", "a/b", ".hidden"):
        with pytest.raises(RegistryError, match="invalid model name"):
            registry.versions(bad_name)


def test_manifest_records_everything(models_dir: Path) -> None:
    """The conftest registry was published by the real trainer pipeline."""
    registry = ModelRegistry(models_dir)
    manifest = registry.manifest("mnist", 1)
    assert manifest["version"] == 1 and manifest["name"] == "mnist"
    assert [layer["type"] for layer in manifest["architecture"]] == ["dense", "relu", "dense"]
    assert manifest["architecture"][0] == {"type": "dense", "n_inputs": 784, "n_neurons": 64}
    assert manifest["input_scaling"]["scale"] == pytest.approx(1 / 255)
    assert manifest["input_scaling"]["pixel_range"] == [0, 255]
    assert manifest["hyperparameters"]["hidden"] == [64] and manifest["hyperparameters"]["seed"] == 1
    mnist_sha = manifest["dataset"]["train"]["sha256"]
    assert len(mnist_sha) == 64 and manifest["dataset"]["train"]["rows"] == 8000
    assert manifest["dataset"]["dev"]["rows"] == manifest["dataset"]["test"]["rows"] == 1000
    assert 0.9 < manifest["metrics"]["dev_accuracy"] <= 1.0 and 0.85 < manifest["metrics"]["test_accuracy"] <= 1.0
    assert {"dev_loss", "train_accuracy", "train_loss", "test_loss"} <= set(manifest["metrics"])
    assert sum(map(sum, manifest["test"]["confusion_matrix"])) == 1000
    assert [point["epoch"] for point in manifest["curve"]] == [1, 2, 3, 4]
    assert {"train_loss", "dev_accuracy", "learning_rate", "seconds"} <= set(manifest["curve"][0])
    assert manifest["created_at"].endswith("Z") and manifest["created_at"][:2] == "20"
    weights = models_dir / "mnist" / "1" / "weights.npz"
    assert manifest["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    with np.load(weights, allow_pickle=False) as archive:
        assert all(archive[key].dtype == np.float32 for key in archive.files)


def test_digest_mismatch_refuses_the_load(models_dir: Path) -> None:
    registry = ModelRegistry(models_dir)
    weights = models_dir / "mnist" / "1" / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[-200] ^= 0xFF  # one flipped bit pattern inside the arrays
    weights.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=r"model 'mnist' version 1: weights.npz has sha256 [0-9a-f]{12}\.\.\., "
                                             r"manifest says [0-9a-f]{12}\.\.\.; refusing to load it"):
        registry.load("mnist")
    registry.load("mnist", version=2)  # other versions are unaffected


def rewrite_weights(version_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    """Replace weights.npz and update the manifest's digest, so only the content is wrong."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (version_dir / "weights.npz").write_bytes(buffer.getvalue())
    manifest = json.loads((version_dir / "model.json").read_text())
    manifest["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (version_dir / "model.json").write_text(json.dumps(manifest))


def test_pickled_object_arrays_are_refused(models_dir: Path) -> None:
    registry = ModelRegistry(models_dir)
    version_dir = models_dir / "mnist" / "1"
    with np.load(version_dir / "weights.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    rewrite_weights(version_dir, {**arrays, "dense0_biases": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(CorruptVersion, match=r"version 1: .*allow_pickle=False.*refusing to load it"):
        registry.load("mnist")
    rewrite_weights(version_dir, {**arrays, "dense0_weights": np.zeros((784, 3), np.float32)})
    with pytest.raises(CorruptVersion, match=r"dense0_weights' has shape \(784, 3\)"):
        registry.load("mnist")
    (version_dir / "model.json").write_text("{not json")
    with pytest.raises(CorruptVersion, match=r"model.json is not JSON"):
        registry.load("mnist")


def test_exception_during_write_leaves_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    real_write = registry_module.write_file

    def failing_write(path: Path, data: bytes) -> None:
        if path.name == "model.json":  # weights already written, manifest half-way
            path.write_bytes(data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(registry_module, "write_file", failing_write)
    with pytest.raises(OSError, match="No space left"):
        publish(registry, 1)
    assert registry.versions("digits") == [1]
    assert sorted(p.name for p in registry.model_dir("digits").iterdir() if p.name.startswith(".tmp-")) == []
    monkeypatch.setattr(registry_module, "write_file", real_write)
    assert publish(registry, 2) == 2
    assert registry.aliases("digits") == {"production": 1}


CRASHING_PUBLISHER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import core.registry as registry_module
from core.network import Network

def write_half_then_die(path, data):
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no exception handler, no cleanup runs

registry_module.write_file = write_half_then_die
registry_module.ModelRegistry({root!r}).publish_version("digits", Network.mlp([784, 8, 10]), {{}})
"""


def test_process_killed_mid_write_leaves_no_visible_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    script = CRASHING_PUBLISHER.format(repo=str(REPO_ROOT), root=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = [p for p in registry.model_dir("digits").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "weights.npz").exists()  # the half-written file is there...
    assert registry.versions("digits") == [1]  # ...but no reader can see it
    assert visible_entries(registry, "digits") == ["1", "aliases.json"]
    assert publish(registry, 3) == 2
    assert registry.load("digits", version=2).version == 2


def _publish_after_barrier(root: str, seed: int, barrier: multiprocessing.synchronize.Barrier,
                           results: multiprocessing.Queue) -> None:
    registry = ModelRegistry(root)
    network = small_network(seed)
    barrier.wait(timeout=30)
    results.put((seed, registry.publish_version("digits", network, {"seed": seed})))


def test_concurrent_publishes_get_distinct_versions(tmp_path: Path) -> None:
    n = 6
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(n), context.Queue()
    processes = [context.Process(target=_publish_after_barrier, args=(str(tmp_path), seed, barrier, results))
                 for seed in range(n)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    outcomes = dict(results.get(timeout=5) for _ in range(n))
    registry = ModelRegistry(tmp_path)
    assert sorted(outcomes.values()) == list(range(1, n + 1))
    assert registry.versions("digits") == list(range(1, n + 1))
    assert registry.aliases("digits") == {"production": 1}
    for seed, version in outcomes.items():  # each number holds the network its publisher wrote
        assert registry.manifest("digits", version)["seed"] == seed
        np.testing.assert_array_equal(registry.load("digits", version=version).network.arrays()["dense0_weights"],
                                      small_network(seed).arrays()["dense0_weights"])


def test_fingerprint_changes_on_publish_and_alias(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    empty = registry.fingerprint("digits")
    publish(registry)
    first = registry.fingerprint("digits")
    publish(registry, 1)
    second = registry.fingerprint("digits")
    registry.set_alias("digits", "production", 2)
    third = registry.fingerprint("digits")
    assert len({empty, first, second, third}) == 4


def test_scaling_round_trips(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.publish_version("digits", small_network(), {}, InputScaling(scale=2 / 255, offset=1.0))
    model = registry.load("digits")
    assert model.scaling == InputScaling(scale=2 / 255, offset=1.0)
    assert zipfile.is_zipfile(registry.version_dir("digits", 1) / "weights.npz")


def test_alias_compare_and_set(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for seed in range(3):
        publish(registry, seed)
    assert registry.set_alias("digits", "production", 2, expected=1) == {"production": 2}
    # Someone else moved production meanwhile: the stale writer is refused and nothing changes.
    with pytest.raises(AliasChanged, match="now points at version 2, not 1") as raised:
        registry.set_alias("digits", "production", 3, expected=1)
    assert raised.value.status == 409 and registry.aliases("digits") == {"production": 2}
    # expected=None: the alias must not exist yet.
    assert registry.set_alias("digits", "staging", 3, expected=None)["staging"] == 3
    with pytest.raises(AliasChanged, match="now points at version 3, not None"):
        registry.set_alias("digits", "staging", 1, expected=None)
    assert registry.aliases("digits") == {"production": 2, "staging": 3}


def test_promote_refuses_a_version_that_cannot_load(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    publish(registry, 1)
    weights = registry.version_dir("digits", 2) / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(PromotionRefused, match=r"cannot point 'production' at version 2: .*sha256") as raised:
        registry.promote("digits", "production", 2)
    assert raised.value.status == 409 and registry.aliases("digits") == {"production": 1}
    with pytest.raises(InvalidName):
        registry.promote("digits", "\u0661", 1)  # an Arabic-Indic digit: not an ASCII alias
    assert registry.promote("digits", "production", 1, expected=1) == {"production": 1}


def test_a_network_that_is_not_784_to_10_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    wrong = registry.publish_version("digits", Network.mlp([784, 8, 5], seed=0), {})
    with pytest.raises(CorruptVersion, match="architecture maps 784 -> 5, a digit model needs 784 -> 10"):
        registry.load("digits", version=wrong)
    with pytest.raises(PromotionRefused, match="784 -> 5"):
        registry.promote("digits", "production", wrong)


def test_non_ascii_digit_directories_are_not_versions(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish(registry)
    (registry.model_dir("digits") / "²").mkdir()  # "²".isdigit() is True but int("²") raises
    (registry.model_dir("digits") / "0").mkdir()
    assert registry.versions("digits") == [1]
