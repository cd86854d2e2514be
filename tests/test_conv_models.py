"""Conv networks as models: manifests that hold any stack of layers, MLP manifests written before
conv layers existed, the registry's checks, and the trainer's ``--arch cnn`` / ``--preset cnn``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.datasets import Dataset
from core.model import CONV_ROWS_PER_PASS
from core.network import Network, softmax
from core.registry import CorruptVersion, ModelRegistry
from core.settings import Settings
from core.training_config import TrainConfig
from trainer.cli import build_parser, cmd_train_config
from trainer.training import train

# Written by main at 5281b7c (before conv layers) with Network.mlp([784, 4, 10], seed=0) and
# ModelRegistry.publish_version: today's code must keep loading such versions unchanged.
MAIN_MLP_REGISTRY = Path(__file__).parent / "fixtures" / "mlp_registry"


def test_an_mlp_version_written_before_conv_layers_still_loads(tmp_path: Path) -> None:
    shutil.copytree(MAIN_MLP_REGISTRY, tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    model = registry.load("digits")
    assert model.version == 1 and model.manifest["format"] == "mnist-serve/numpy-mlp/1"
    assert [layer["type"] for layer in model.manifest["architecture"]] == ["dense", "relu", "dense"]
    assert model.max_rows_per_pass == 8192  # the MLP's serving path is as it was
    with np.load(MAIN_MLP_REGISTRY / "digits" / "1" / "weights.npz") as stored:
        w0, b0, w1, b1 = (stored[k] for k in ("dense0_weights", "dense0_biases", "dense1_weights", "dense1_biases"))
    pixels = np.random.default_rng(0).integers(0, 256, (6, 784)).astype(np.float32)
    scaled = pixels / np.float32(255)
    expected = softmax(np.maximum(scaled @ w0 + b0, 0) @ w1 + b1)
    np.testing.assert_allclose(model.predict_proba(pixels), expected, rtol=1e-5, atol=1e-7)
    # Re-published by today's code, an MLP keeps its format and its array names.
    version = registry.publish_version("digits", model.network, {})
    assert registry.manifest("digits", version)["format"] == "mnist-serve/numpy-mlp/1"
    assert sorted(model.network.arrays()) == ["dense0_biases", "dense0_weights", "dense1_biases", "dense1_weights"]


def test_a_cnn_publishes_loads_and_predicts_like_the_trained_network(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    network = Network.cnn(channels=(4, 8), hidden=(16,), seed=1)
    version = registry.publish_version("digits", network, {})
    manifest = json.loads((registry.version_dir("digits", version) / "model.json").read_text())
    assert manifest["format"] == "mnist-serve/numpy-net/1"
    assert manifest["architecture"][:2] == [
        {"type": "reshape", "shape": [28, 28, 1]},
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel": 3, "stride": 1, "padding": 0}]
    model = registry.load("digits", version=version)
    pixels = np.random.default_rng(1).integers(0, 256, (CONV_ROWS_PER_PASS * 2 + 5, 784)).astype(np.uint8)
    # Large batches run in slices of CONV_ROWS_PER_PASS rows (activations are per-row heavy), same result.
    assert model.max_rows_per_pass == CONV_ROWS_PER_PASS
    np.testing.assert_allclose(model.predict_proba(pixels), network.predict_proba(pixels / np.float32(255)),
                               rtol=1e-5, atol=1e-6)


def test_a_cnn_that_does_not_map_784_to_10_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.publish_version("digits", Network.cnn(channels=(2,), hidden=(), n_classes=5), {})
    with pytest.raises(CorruptVersion, match="architecture maps 784 -> 5, a digit model needs 784 -> 10"):
        registry.load("digits", version=version)
    wrong_image = Network.cnn(channels=(2,), hidden=(), image=(27, 29, 1))  # 783 pixels, not 784
    version = registry.publish_version("digits", wrong_image, {})
    with pytest.raises(CorruptVersion, match="cannot be used"):
        registry.load("digits", version=version)


def test_arch_flag_and_cnn_preset() -> None:
    parse = build_parser(Settings()).parse_args
    config = cmd_train_config(parse(["train", "--data", "x", "--arch", "cnn", "--channels", "8", "16",
                                     "--hidden", "32"]))
    assert (config.arch, config.channels, config.hidden) == ("cnn", [8, 16], [32])
    preset = cmd_train_config(parse(["train", "--data", "x", "--preset", "cnn", "--epochs", "2"]))
    assert (preset.arch, preset.channels, preset.hidden, preset.epochs) == ("cnn", [8, 32], [128], 2)
    assert (preset.augment_shift, preset.augment_rotate, preset.augment_scale, preset.augment_elastic,
            preset.ema) == (2, 10.0, 0.1, 20.0, 0.999)
    assert TrainConfig().arch == "mlp"
    for bad in ([8, 8, 8, 8], [], [0], [513]):
        with pytest.raises(ValueError, match="channels"):
            TrainConfig(arch="cnn", channels=bad)
    # The bounds are in the JSON schema (what the OpenAPI document serves), not only in a validator.
    schema = TrainConfig.model_json_schema()["properties"]["channels"]
    assert (schema["minItems"], schema["maxItems"], schema["items"]) == (1, 3, {"type": "integer", "minimum": 1,
                                                                               "maximum": 512})
    uniform = Network.cnn(channels=(2,), hidden=(), init="uniform")
    assert -0.5 <= uniform.trainable_layers[0].weights.min() < -0.4


def test_a_small_cnn_learns_real_digits(mnist: Dataset) -> None:
    train_set = Dataset(mnist.X[:2000], mnist.y[:2000], mnist.source, mnist.digest)
    dev_set = Dataset(mnist.X[-500:], mnist.y[-500:], mnist.source, mnist.digest)
    # ~0.88 here (an MLP of 32 units with the same steps: ~0.79); 0.8 leaves room for other seeds.
    config = TrainConfig(arch="cnn", channels=[8], hidden=[32], epochs=3, lr=1e-2, batch_size=64, dropout=0.0,
                         augment_shift=0, early_stopping=0, seed=1)
    result = train(train_set, dev_set, config)
    assert [layer["type"] for layer in result.model.network.architecture()][:4] == [
        "reshape", "conv2d", "maxpool2d", "relu"]
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    assert result.metrics["dev_accuracy"] > 0.8
    predicted = result.model.predict(dev_set.X)[0]
    assert float((predicted == dev_set.y).mean()) == pytest.approx(result.metrics["dev_accuracy"])
