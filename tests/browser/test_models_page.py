"""The Models page's version panels say what applies to each version: the hyper-parameters its
architecture and optimizer used (a manifest records all of TrainConfig), the dataset's file name
rather than the server's path, and a model with one version is shown alone, not beside itself."""

from __future__ import annotations

import pytest
import requests

from core.network import Network
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from tests.browser.conftest import PHONE
from tests.support import wait_until

PANEL_LOADED = "document.querySelectorAll('#panel-a .confusion rect').length === 100"
KEPT = ("metrics", "dataset", "curve", "best_epoch", "training_seconds")


def _hyperparameters(page, panel: str) -> dict[str, str]:
    """The panel's hyper-parameter list (the ``dl`` after its "Hyper-parameters" heading)."""
    return page.evaluate("""panel => {
        const heading = [...document.querySelectorAll(`#${panel} h3`)].find(h => h.textContent === 'Hyper-parameters');
        const dl = heading.nextElementSibling;
        return Object.fromEntries([...dl.querySelectorAll('dt')].map(dt => [dt.textContent,
                                                                          dt.nextElementSibling.textContent]));
    }""", panel)


def _train_source(page, panel: str) -> str:
    return page.locator(f"#{panel} dt:text-is('train') + dd").inner_text()


@pytest.fixture()
def tiny_cnn(console_stack) -> str:
    """``tinycnn``: one version, a small untrained CNN whose manifest says SGD with momentum, with mnist
    v1's record (metrics, curve, and its dataset under the absolute path it was trained from)."""
    registry = ModelRegistry(console_stack.models_dir)
    record = {k: v for k, v in registry.manifest("mnist", 1).items() if k in KEPT}
    config = TrainConfig(preset="cnn", channels=[2], hidden=[8], optimizer="momentum", epochs=1)
    registry.publish_version("tinycnn", Network.cnn(channels=[2], hidden=[8]),
                             {**record, "hyperparameters": config.model_dump()})

    def listed() -> bool:
        names = [m["name"] for m in requests.get(console_stack.url + "/v1/models", timeout=10).json()["models"]]
        return "tinycnn" in names
    wait_until(listed, 20, "the server to serve tinycnn")
    return "tinycnn"


def test_an_adam_mlp_lists_neither_channels_nor_momentum(open_page, console_stack):
    recorded = requests.get(console_stack.url + "/v1/models/mnist/versions/1", timeout=10).json()["hyperparameters"]
    assert (recorded["arch"], recorded["optimizer"], recorded["lr_schedule"]) == ("mlp", "adam", "cosine")
    assert {"channels", "momentum", "lr_decay"} <= set(recorded)  # recorded, yet never read by this run
    watched = open_page("/console/models")
    page = watched.page
    page.wait_for_function(PANEL_LOADED, timeout=30_000)
    for panel in ("panel-a", "panel-b"):
        shown = _hyperparameters(page, panel)
        assert {"arch", "hidden", "optimizer", "lr", "dropout"} <= set(shown), shown
        assert not {"channels", "momentum", "lr_decay"} & set(shown), shown
    assert _hyperparameters(page, "panel-a")["hidden"] == "64"
    watched.assert_clean()


def test_a_cnn_trained_with_momentum_lists_channels_and_momentum(open_page, console_stack, tiny_cnn):
    watched = open_page(f"/console/models?model={tiny_cnn}")
    page = watched.page
    page.wait_for_function(PANEL_LOADED, timeout=30_000)
    shown = _hyperparameters(page, "panel-a")
    assert [shown[name] for name in ("arch", "channels", "optimizer", "momentum")] == ["cnn", "2", "momentum", "0.9000"]
    assert "lr_decay" not in shown  # a cosine schedule never reads it
    watched.assert_clean()


def test_the_dataset_is_named_by_its_file_not_the_servers_path(open_page, console_stack):
    train = requests.get(console_stack.url + "/v1/models/mnist/versions/1", timeout=10).json()["dataset"]["train"]
    assert train["source"].startswith("/") and train["source"].endswith("/t10k-images-idx3-ubyte.gz")
    watched = open_page("/console/models")
    page = watched.page
    page.wait_for_function(PANEL_LOADED, timeout=30_000)
    for panel in ("panel-a", "panel-b"):
        assert _train_source(page, panel) == f"t10k-images-idx3-ubyte.gz ({train['rows']} rows)"
    watched.assert_clean()


def test_a_single_version_is_shown_alone_not_beside_itself(open_page, console_stack, tiny_cnn):
    watched = open_page(f"/console/models?model={tiny_cnn}", PHONE)
    page = watched.page
    page.wait_for_function(PANEL_LOADED, timeout=30_000)
    assert page.locator("#compare-h").inner_text() == "Version details"
    assert page.locator("#compare-note").inner_text().startswith(f"v1 is the only version of {tiny_cnn}:")
    assert not page.locator("#compare-pick").is_visible()
    assert page.locator(".version-panel:visible").count() == 1
    assert page.locator("#panel-b").inner_text() == ""  # never filled with v1 again
    watched.screenshot("models-single-version-phone")
    watched.assert_clean()

    # A second version brings the comparison back: production v1 on the left, v2 on the right.
    registry = ModelRegistry(console_stack.models_dir)
    record = {k: v for k, v in registry.manifest(tiny_cnn, 1).items() if k in (*KEPT, "hyperparameters")}
    registry.publish_version(tiny_cnn, registry.load(tiny_cnn, version=1).network, record)
    wait_until(lambda: len(requests.get(f"{console_stack.url}/v1/models/{tiny_cnn}", timeout=10).json()["versions"])
               == 2, 20, "the server to list v2")
    page.reload()
    page.wait_for_function("document.querySelectorAll('.confusion rect').length === 200", timeout=30_000)
    assert page.locator("#compare-h").inner_text() == "Compare two versions"
    assert page.locator("#compare-pick").is_visible() and not page.locator("#compare-note").is_visible()
    assert [page.locator(f"#pick-{side}").input_value() for side in "ab"] == ["1", "2"]
    watched.assert_clean()
