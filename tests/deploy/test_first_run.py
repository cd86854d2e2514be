"""A newcomer's first run: a refused setting says which and why first; the README's examples work as pasted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from tests.deploy.test_run_local import Launcher
from tests.support import REPO_ROOT


def test_a_refused_setting_names_the_variable_and_the_problem_only() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(max_instances="lots", reload_interval=-1)
    message = str(refused.value)
    assert message.startswith("invalid setting MAX_INSTANCES: Input should be a valid integer")
    assert "RELOAD_INTERVAL: Input should be greater than or equal to 0" in message
    assert "input" not in message.replace("Input should", "") and "\n" not in message
    assert isinstance(refused.value, ValueError)  # callers that catch ValueError keep working


def test_a_process_started_with_a_bad_environment_ends_with_one_short_line() -> None:
    """What gunicorn and the worker print last: the variable and the problem, not every default."""
    env = {"PATH": "/usr/bin:/bin", "JOB_RETRIES": "99"}
    result = subprocess.run([sys.executable, "-c", "from core.settings import Settings; Settings()"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "core.settings.SettingsError: invalid setting JOB_RETRIES: Input should be less than or equal to 10"
    assert "input_value" not in result.stderr


@pytest.mark.parametrize("command", [["worker"], ["trainer", "models", "list"]])
def test_the_worker_and_trainer_refuse_a_bad_setting_in_one_line_without_a_traceback(command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "JOB_RETRIES": "99"}
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: invalid setting JOB_RETRIES: Input should be less than or equal to 10"


def test_valid_settings_are_unchanged(tmp_path) -> None:
    settings = Settings(max_instances=5, models_dir=tmp_path)
    assert settings.max_instances == 5 and settings.models_dir == tmp_path


def readme_block(heading: str) -> str:
    """The first ```sh block after ``heading`` in README.md."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(heading):]
    start = after.index("```sh\n") + len("```sh\n")
    return after[start:after.index("```", start)]


def test_the_readme_examples_work_pasted_as_written(tmp_path: Path, mnist_dir: Path) -> None:
    """Every command under "Using it", run by bash against `make run`'s launcher from a checkout-like
    folder: no error body, the job polled until done before its download, files only in scratch/."""
    launcher = Launcher(tmp_path, mnist_dir)
    launcher.env["API_KEY"] = ""  # as `make run`: a generated key in .run/api-key
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in (".venv", "data"):
        (checkout / name).symlink_to(REPO_ROOT / name)
    (checkout / ".run").symlink_to(launcher.run_dir, target_is_directory=True)
    block = readme_block("## Using it")
    assert "API=http://127.0.0.1:8000\n" in block
    script = block.replace("API=http://127.0.0.1:8000\n", f"API={launcher.url}\n")
    try:
        launcher.start()
        before = set(os.listdir(checkout))
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=checkout, capture_output=True,
                                text=True, timeout=180, env={**os.environ, "PATH": os.environ["PATH"]})
    finally:
        launcher.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"error":"' not in result.stdout.replace(' ', ''), result.stdout  # null is fine, a message is not
    assert "ImageId,Label\n1," in result.stdout  # the submission, downloaded after the job finished
    assert '"status":"finished"' in result.stdout.replace(" ", "")
    assert set(os.listdir(checkout)) - before == {"scratch"}
    assert sorted(os.listdir(checkout / "scratch")) == ["digits.json", "explain.json", "submission.csv", "test.csv"]
    submission = (checkout / "scratch" / "submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,Label" and len(submission) == 1001  # the whole result, downloaded when done
    ignored = subprocess.run(["git", "check-ignore", "-q", "scratch/test.csv"], cwd=REPO_ROOT)
    assert ignored.returncode == 0  # in a real checkout, git ignores what the examples write
