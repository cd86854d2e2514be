"""The console's actions end to end: a CSV scored with live progress, a retrain whose curve grows
per epoch, promotion from the Models page (and a wrong key refused), all through the real stack."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import API_KEY
from tests.jobs.conftest import write_kaggle_csv

FORBIDDEN_LOG = "status of 403"  # Chromium logs every 4xx fetch as a console error


@pytest.mark.slow
def test_score_a_csv_with_live_progress_and_download(open_page, console_stack, mnist, tmp_path):
    csv = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:2000])
    watched = open_page("/console/jobs")
    page = watched.page
    page.set_input_files("#score-file", str(csv))
    page.click("#score-submit")
    page.wait_for_selector("#score-result:not([hidden])", timeout=60_000)
    bar = page.locator("#score-progress")
    assert bar.get_attribute("max") == "2000"
    assert page.evaluate("document.getElementById('score-progress').value") == 2000
    assert page.locator("#score-rows").inner_text() == "2000 / 2000 rows"
    seen = [int(v) for v in bar.get_attribute("data-seen").split(",")]
    assert seen == sorted(seen) and seen[0] < 2000 and seen[-1] == 2000, seen  # it moved, never backwards, to done
    with page.expect_download() as download:
        page.click("#score-download")
    lines = download.value.path().read_text().splitlines()
    assert len(lines) == 2001 and lines[0] == "ImageId,Label"
    # The same file the API hands anyone with the job id.
    job_id = bar.get_attribute("data-job")
    assert requests.get(f"{console_stack.url}/v1/jobs/{job_id}/result", timeout=10).text.splitlines() == lines
    watched.screenshot("jobs-scored")
    watched.assert_clean()


@pytest.mark.slow
def test_retrain_from_the_form_draws_a_point_per_epoch_while_running(open_page, console_stack):
    epochs = 4
    watched = open_page("/console/jobs")
    page = watched.page
    page.fill("#api-key", API_KEY)
    page.fill("#train-hidden", "1024")  # the default width: epochs long enough to watch
    page.fill("#train-epochs", str(epochs))
    page.select_option("#train-promote", "never")
    page.click("#train-submit")
    page.wait_for_selector("#train-curve[data-job]")
    job_id = page.get_attribute("#train-curve", "data-job")
    observed: list[tuple[int, str]] = []  # (points drawn, job status) as the page showed them
    while True:
        points = int(page.get_attribute("#train-curve", "data-points") or 0)
        stage = page.locator("#train-stage").inner_text()
        observed.append((points, stage.split(":")[0]))
        if stage.startswith(("finished", "failed", "canceled")):
            break
        page.wait_for_timeout(100)
    status = requests.get(f"{console_stack.url}/v1/jobs/{job_id}", timeout=10).json()
    assert status["status"] == "finished", status
    assert len(status["curve"]) == epochs and [c["epoch"] for c in status["curve"]] == list(range(1, epochs + 1))
    counts = [points for points, _ in observed]
    assert counts == sorted(counts) and counts[-1] == epochs, observed
    assert any(0 < points < epochs for points, state in observed if state == "started"), observed
    # Three series (train loss, dev loss, dev accuracy), one point per epoch each.
    assert page.locator("#train-curve circle.point").count() == 3 * epochs
    page.click("#refresh")
    page.wait_for_selector(f"#recent tr[data-job='{job_id}'] .status-finished")
    watched.screenshot("jobs-retrained")
    watched.assert_clean()


def _production(stack) -> int:
    return requests.get(stack.url + "/v1/models/mnist", timeout=10).json()["production_version"]


def test_promote_from_the_page_and_a_wrong_key_changes_nothing(open_page, console_stack):
    assert _production(console_stack) == 1
    watched = open_page("/console/models")
    page = watched.page
    page.wait_for_selector("#promote-version option[value='2']", state="attached")
    page.fill("#api-key", "not-the-key")
    page.select_option("#promote-version", "2")
    page.click("#promote")
    page.wait_for_function("document.getElementById('promote-error').textContent !== ''")
    assert page.locator("#promote-error").inner_text() == "invalid API key"  # the API's 403 {"error"}, verbatim
    assert _production(console_stack) == 1
    assert page.locator("#promote-ok").inner_text() == ""

    page.fill("#api-key", API_KEY)
    page.click("#promote")
    page.wait_for_function("document.getElementById('promote-ok').textContent.includes('v2')")
    assert page.locator("#promote-error").inner_text() == ""
    assert _production(console_stack) == 2
    page.wait_for_function("document.getElementById('aliases').textContent.startsWith('production → v2')")
    # Roll back: production returns to the version below it.
    page.wait_for_function("document.getElementById('rollback').textContent.includes('v1')")
    page.click("#rollback")
    page.wait_for_function("document.getElementById('aliases').textContent.startsWith('production → v1')")
    assert _production(console_stack) == 1
    watched.assert_clean(allowed=lambda message: FORBIDDEN_LOG in message)
    assert sum(FORBIDDEN_LOG in message for message in watched.console_errors) == 1


def test_cancel_a_running_retrain_from_the_recent_jobs(open_page, console_stack):
    watched = open_page("/console/jobs")
    page = watched.page
    page.fill("#api-key", API_KEY)
    page.fill("#train-hidden", "1024")
    page.fill("#train-epochs", "200")  # far longer than the test: only the cancel ends it
    page.select_option("#train-promote", "never")
    page.click("#train-submit")
    page.wait_for_selector("#train-curve[data-job]")
    job_id = page.get_attribute("#train-curve", "data-job")
    page.wait_for_function("document.getElementById('train-stage').textContent.startsWith('started')",
                           timeout=60_000)
    page.click("#refresh")
    page.click(f"#recent tr[data-job='{job_id}'] button")
    page.wait_for_function("document.getElementById('train-stage').textContent.startsWith('canceled')",
                           timeout=60_000)
    assert requests.get(f"{console_stack.url}/v1/jobs/{job_id}", timeout=10).json()["status"] == "canceled"
    page.click("#refresh")
    page.wait_for_selector(f"#recent tr[data-job='{job_id}'] .status-canceled")
    assert page.locator("#train-error").inner_text() == ""
    watched.assert_clean()


def test_recent_jobs_name_the_model_they_used(open_page, console_stack, mnist, tmp_path):
    csv = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:50])
    accepted = console_stack.submit_csv(csv, model="mnist")
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    status = console_stack.wait(job_id)
    assert (status["status"], status["model"], status["model_version"]) == ("finished", "mnist", 1), status
    listed = requests.get(console_stack.url + "/v1/jobs", headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=10).json()["jobs"]
    assert [job["model"] for job in listed if job["job_id"] == job_id] == ["mnist"]  # what the column shows
    watched = open_page("/console/jobs")
    page = watched.page
    assert page.locator("#recent thead th").all_inner_texts()[2] == "Model"
    page.fill("#api-key", API_KEY)
    page.click("#refresh")
    row = page.locator(f"#recent tr[data-job='{job_id}']")
    row.wait_for()
    assert row.locator("td").nth(2).inner_text() == "mnist v1"
    watched.assert_clean()
