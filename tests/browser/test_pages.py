"""Every console page in Chromium at desktop and phone width: it loads its figures from the API,
does not overflow 390 px, logs no console error and asks nothing of any host but 127.0.0.1."""

from __future__ import annotations

import pytest
import requests

from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import API_KEY

PAGES = {"try": "/", "models": "/console/models", "jobs": "/console/jobs", "health": "/console/health",
         "docs": "/docs"}
# What each page shows once its API calls have answered.
LOADED = {
    "try": "document.querySelectorAll('#target option').length >= 3",
    "models": "document.querySelectorAll('.confusion rect').length === 200",
    "jobs": "document.querySelector('#recent tbody tr') !== null",
    "health": "document.querySelectorAll('#workers tbody tr').length >= 1 && "
              "document.querySelector('#rate-chart svg') !== null",
    # Swagger UI has drawn an operation for every path and method of /openapi.json
    "docs": "document.querySelectorAll('.opblock').length >= 40",
}


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_loads_and_fits(open_page, console_stack, viewport):
    for name, path in PAGES.items():
        watched = open_page(path, viewport)
        page = watched.page
        page.wait_for_function(LOADED[name], timeout=30_000)
        assert page.title().endswith("mnist-serve")
        assert page.locator("link[rel=icon]").count() == 1
        assert page.evaluate("document.querySelector('meta[name=viewport]').content").startswith("width=device-width")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} overflows {viewport['width']} px by {overflow} px"
        unlabeled = page.evaluate("""[...document.querySelectorAll('input, select')].filter(e =>
            !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
        assert not unlabeled, f"{path}: controls without a label: {unlabeled}"
        watched.screenshot(f"{name}-{'phone' if viewport is PHONE else 'desktop'}")
        watched.assert_clean()


def test_models_page_shows_what_the_api_says(open_page, console_stack):
    info = requests.get(console_stack.url + "/v1/models/mnist", timeout=10).json()
    watched = open_page("/console/models")
    page = watched.page
    page.wait_for_function(LOADED["models"], timeout=30_000)
    assert page.locator("#versions tbody tr").count() == len(info["versions"])
    assert page.locator("#aliases").inner_text().startswith(f"production → v{info['production_version']}")
    # Left: production (v1). Its curve has a point per epoch for train and dev, in both charts.
    manifest = requests.get(console_stack.url + "/v1/models/mnist/versions/1", timeout=10).json()
    epochs = len(manifest["curve"])
    assert page.locator("#panel-a circle.point").count() == 4 * epochs
    # The confusion matrix and accuracy of the test split, which no training step saw, as the manifest
    # recorded them when the version was published.
    test = manifest["test"]
    cells = page.locator("#panel-a .confusion g title").all_text_contents()
    assert cells[0].startswith(f"true 0, predicted 0: {test['confusion_matrix'][0][0]} ")
    assert sum(map(sum, test["confusion_matrix"])) == manifest["dataset"]["test"]["rows"]
    shown = f"{test['accuracy'] * 100:.2f}%"
    assert f"accuracy {shown}" in page.locator("#panel-a").inner_text()
    row = page.locator("#versions tbody tr[data-version='1']").inner_text()
    assert shown in row and f"{manifest['metrics']['dev_accuracy'] * 100:.2f}%" in row
    watched.assert_clean()


def test_recent_jobs_need_the_key_and_list_with_it(open_page, console_stack, tmp_path):
    watched = open_page("/console/jobs")
    page = watched.page
    assert "Type the API key" in page.locator("#recent tbody").inner_text()
    page.fill("#api-key", API_KEY)
    page.click("#refresh")
    page.wait_for_function("document.querySelector('#recent tbody').innerText.includes('no jobs yet')")
    # Kept for this tab only: in sessionStorage, never in a cookie or the URL.
    assert page.evaluate("sessionStorage.getItem('mnist-serve.api-key')") == API_KEY
    assert page.context.cookies() == [] and API_KEY not in page.url
    watched.assert_clean()


def test_the_health_tables_fit_a_phone(open_page, console_stack):
    # The longest route the metrics name, requested first so that its row is in the table.
    assert requests.get(console_stack.url + "/v1/models/mnist/versions/1/evaluation", timeout=60).status_code == 200
    watched = open_page("/console/health", PHONE)
    page = watched.page
    page.wait_for_function("""[...document.querySelectorAll('#endpoints tbody code')]
        .some(code => code.textContent.endsWith('/evaluation'))""", timeout=30_000)
    # Each table fits its card: nothing cut at the card's edge, nothing to scroll sideways to find.
    for table in ("#workers", "#endpoints"):
        sizes = page.evaluate(f"""(() => {{ const box = document.querySelector('{table}').parentElement;
            return [box.scrollWidth, box.clientWidth]; }})()""")
        assert sizes[0] <= sizes[1], f"{table} is {sizes[0]} px wide in a {sizes[1]} px box"
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    # Figures are never split from their unit.
    lines = page.evaluate("""[...document.querySelectorAll('#endpoints td.num')].filter(td => td.offsetParent)
        .map(td => { const range = document.createRange(); range.selectNodeContents(td);
                     return range.getClientRects().length; })""")
    assert lines and set(lines) == {1}, lines
    watched.screenshot("health-phone-fits")
    watched.assert_clean()
