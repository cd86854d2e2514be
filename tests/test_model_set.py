"""core.serving.ModelSet (a Predictor per served model name) and the manifest readings V1/V2 rely on:
class names and platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.model import class_names_of, platform_of
from core.network import Network
from core.registry import ModelRegistry
from core.serving import ModelSet, UnknownModel


def _publish(registry: ModelRegistry, name: str, seed: int = 0) -> int:
    return registry.publish_version(name, Network.mlp([784, 8, 10], seed=seed), {})


def test_registry_names_are_served_and_a_later_one_is_found_at_once(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _publish(registry, "mnist")
    models = ModelSet(registry, "mnist", check_interval=60.0)  # no periodic re-listing within the test
    assert models.names() == ["mnist"]
    with pytest.raises(UnknownModel, match="unknown model 'fashion': this server serves 'mnist'") as missing:
        models.predictor("fashion")
    assert missing.value.status == 404
    _publish(registry, "fashion", seed=1)
    assert models.get(model="fashion").version == 1  # a miss re-lists the registry before refusing
    assert models.names() == ["fashion", "mnist"]
    assert models.predictor("fashion") is models.predictor("fashion")  # one Predictor per name
    assert models.predictor() is models.predictor("mnist") and set(models.predictors()) == {"mnist", "fashion"}


def test_the_default_is_served_before_it_has_a_version_and_a_configured_list_is_kept(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _publish(registry, "other")
    (tmp_path / "lost+found").mkdir()  # a volume's root: not a model
    assert ModelSet(registry, "mnist").names() == ["mnist", "other"]
    configured = ModelSet(registry, "mnist", served=["fashion", "mnist"])
    assert configured.names() == ["mnist", "fashion"]
    with pytest.raises(UnknownModel, match="serves 'mnist', 'fashion'"):
        configured.predictor("other")


def test_models_keep_their_own_aliases(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for name in ("a", "b"):
        _publish(registry, name)
        _publish(registry, name, seed=2)
    registry.set_alias("b", "production", 2)
    models = ModelSet(registry, "a", check_interval=0.0)
    assert models.get(model="a").version == 1 and models.get(model="b").version == 2
    registry.set_alias("a", "staging", 2)
    assert models.get(alias="staging", model="a").version == 2
    with pytest.raises(Exception, match="staging"):
        models.get(alias="staging", model="b")


def test_class_names_must_fit_the_outputs() -> None:
    names = [f"c{i}" for i in range(10)]
    assert class_names_of({"class_names": names}) == names
    assert class_names_of({}) is None
    assert class_names_of({"class_names": names[:9]}) is None
    assert class_names_of({"class_names": [*names[:9], 9]}) is None
    assert class_names_of({"class_names": "c0,c1"}) is None


def test_platform_names_the_layer_stack() -> None:
    assert platform_of(Network.mlp([784, 8, 10], dropout=0.1).architecture()) == "numpy-mlp"
    assert platform_of(None) == "numpy-mlp"  # the earliest manifests
    assert platform_of(Network.cnn(channels=(2,), hidden=(4,)).architecture()) == "numpy-cnn"
    assert platform_of([{"type": "reshape", "shape": [784]}, {"type": "dense"}]) == "numpy-net"


def test_serves_reads_the_kept_listing_until_it_is_stale(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _publish(registry, "mnist")
    models = ModelSet(registry, "mnist", check_interval=60.0)
    assert models.serves("mnist") and not models.serves("fashion")
    _publish(registry, "fashion", seed=1)
    assert not models.serves("fashion")  # the kept listing, within its interval
    assert models.predictor("fashion").name == "fashion"  # a miss re-lists at once
    assert models.serves("fashion")
    eager = ModelSet(registry, "mnist", check_interval=0.0)
    _publish(registry, "digits", seed=2)
    assert eager.serves("digits")  # a stale listing is re-read first
    assert ModelSet(registry, "mnist", served=["fashion"]).serves("fashion")
    assert not ModelSet(registry, "mnist", served=["fashion"]).serves("digits")  # a configured list is fixed
