"""A newcomer's first run: a refused setting says which and why first (the README's examples: test_readme.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.settings import Settings, SettingsError
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
