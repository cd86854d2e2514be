"""The header's model picker over a registry of two models: mnist and ``fashion`` (the mnist networks
published again with Fashion-MNIST class names, production v2). Switching it changes the model that
answers on Try it and whose versions the Models page lists; the choice lives in ``?model=`` and
follows the nav links; an unknown ``?model=`` shows the API's 404 text once on every page."""

from __future__ import annotations

import pytest
import requests

from core.registry import ModelRegistry
from tests.browser.conftest import PHONE
from tests.browser.test_try_it import SEVEN, _draw
from tests.conftest import API_KEY
from tests.jobs.conftest import write_kaggle_csv
from tests.support import wait_until

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KEPT = ("metrics", "dataset", "curve", "hyperparameters", "best_epoch", "training_seconds")
NOT_FOUND_LOG = "status of 404"  # Chromium logs every 4xx fetch as a console error


@pytest.fixture()
def fashion(console_stack) -> str:
    """Publish ``fashion`` v1 and v2 (v2 in production) beside mnist; the running stack serves it."""
    registry = ModelRegistry(console_stack.models_dir)
    for version in (1, 2):
        model = registry.load("mnist", version=version)
        # mnist's own record (metrics, curve, dataset), so the Models page can draw and evaluate it.
        record = {k: v for k, v in registry.manifest("mnist", version).items() if k in KEPT}
        registry.publish_version("fashion", model.network, {**record, "class_names": FASHION}, model.scaling)
    registry.set_alias("fashion", "production", 2)

    def listed() -> bool:
        names = [m["name"] for m in requests.get(console_stack.url + "/v1/models", timeout=10).json()["models"]]
        return "fashion" in names
    wait_until(listed, 20, "the server to serve fashion")
    return "fashion"


def test_switching_the_picker_changes_the_answering_model_and_the_models_page(open_page, console_stack, fashion):
    watched = open_page("/")
    page = watched.page
    page.wait_for_selector("#model-pick[data-loaded='2']", state="attached")
    assert page.locator("label[for=model-pick]").inner_text() == "Model"
    assert page.locator("#model-pick").input_value() == "mnist"  # the server's default without ?model=
    _draw(page, SEVEN)
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#answer").inner_text() == "It is a 7"  # mnist's manifest names no classes
    assert page.locator("#answered-by").inner_text() == "answered by mnist version 1"

    page.select_option("#model-pick", "fashion")  # a pointer-style choice switches at once
    page.wait_for_url("**/?model=fashion")
    page.wait_for_selector("#target option[value='a:production']", state="attached")
    assert page.locator("#model-pick").input_value() == "fashion"
    _draw(page, SEVEN)
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#answered-by").inner_text() == "answered by fashion version 2"
    assert page.locator("#answer").inner_text() == f"It is a 7 — {FASHION[7]}"
    watched.screenshot("picker-try-fashion")

    # The choice survives a reload and follows the nav link to Models, which lists fashion's versions.
    page.reload()
    assert page.locator("#model-pick").input_value() == "fashion"
    page.click("nav a:has-text('Models')")
    page.wait_for_url("**/console/models?model=fashion")
    page.wait_for_function("document.getElementById('aliases').textContent.startsWith('production → v2')")
    info = requests.get(console_stack.url + "/v1/models/fashion", timeout=10).json()
    assert [row.get_attribute("data-version") for row in page.locator("#versions tbody tr").all()] == \
        [str(v["version"]) for v in reversed(info["versions"])]
    assert page.locator("h1").inner_text() == "Models: fashion"
    page.wait_for_function("document.querySelectorAll('.confusion rect').length === 200", timeout=30_000)
    watched.screenshot("picker-models-fashion")
    watched.assert_clean()


def test_the_picker_works_from_the_keyboard(open_page, console_stack, fashion):
    watched = open_page("/console/health")
    page = watched.page
    page.wait_for_selector("#model-pick[data-loaded='2']", state="attached")
    page.focus("#model-pick")
    page.keyboard.press("ArrowUp")  # fashion sorts before mnist; arrows move without leaving the page
    assert page.locator("#model-pick").input_value() == "fashion"
    assert "model=" not in page.url
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/health?model=fashion")
    # Health: the picked model's serving version per worker comes first.
    page.wait_for_selector("#workers tbody tr.picked[data-model='fashion']")
    assert page.locator("#workers tbody tr").first.get_attribute("data-model") == "fashion"
    assert page.locator("#production").inner_text() == "v2"
    watched.assert_clean()


@pytest.mark.parametrize("path", ["/", "/console/models", "/console/jobs", "/console/health"])
def test_an_unknown_model_shows_the_apis_404(open_page, console_stack, fashion, path):
    expected = requests.get(console_stack.url + "/v1/models/nosuch", timeout=10).json()["error"]
    assert expected.startswith("unknown model 'nosuch'")
    watched = open_page(path + "?model=nosuch", PHONE)
    page = watched.page
    page.wait_for_function("document.getElementById('model-error').textContent !== ''")
    assert page.locator("#model-error").inner_text() == expected
    assert page.locator("#model-pick").input_value() == "nosuch"
    # Shown once: the pages that ask for the model themselves (all but Jobs) keep their own boxes
    # quiet once those answers are in, as the header's alert already says it.
    asks = 1 if path == "/console/jobs" else 2
    page.wait_for_function(f"""performance.getEntriesByType('resource')
        .filter(e => e.name.endsWith('/v1/models/nosuch')).length >= {asks}""")
    page.wait_for_timeout(300)  # the last answer's handler, after its body is read
    assert page.locator("main").inner_text().count(expected) == 1
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{path} overflows 390 px by {overflow} px"
    watched.screenshot(f"picker-unknown-{path.strip('/').replace('/', '-') or 'try'}")
    watched.assert_clean(allowed=lambda message: NOT_FOUND_LOG in message)


def test_jobs_target_the_picked_model(open_page, console_stack, fashion, mnist, tmp_path):
    csv = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:200])
    watched = open_page("/console/jobs?model=fashion")
    page = watched.page
    page.wait_for_selector("#model-pick[data-loaded='2']", state="attached")
    page.fill("#api-key", API_KEY)
    page.set_input_files("#score-file", str(csv))
    page.click("#score-submit")
    page.wait_for_selector("#score-result:not([hidden])", timeout=60_000)
    status = requests.get(f"{console_stack.url}/v1/jobs/{page.get_attribute('#score-progress', 'data-job')}",
                          timeout=10).json()
    assert (status["model"], status["model_version"]) == ("fashion", 2), status
    # Retrain: the form starts at the picked model and may name a new one.
    assert page.locator("#train-model").input_value() == "fashion"
    page.fill("#train-model", "fashion-small")
    page.fill("#train-epochs", "1")
    page.select_option("#train-promote", "never")
    with page.expect_request("**/v1/jobs/train") as sent:
        page.click("#train-submit")
    assert sent.value.post_data_json["model"] == "fashion-small"
    page.wait_for_function("document.getElementById('train-stage').textContent.startsWith('finished')",
                           timeout=120_000)
    job = requests.get(f"{console_stack.url}/v1/jobs/{page.get_attribute('#train-curve', 'data-job')}",
                       timeout=10).json()
    assert job["model"] == "fashion-small" and job["produced_version"] == 1, job
    watched.screenshot("picker-jobs-fashion")
    watched.assert_clean()
