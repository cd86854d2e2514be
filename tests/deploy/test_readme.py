"""The README's "Using it" section, pasted as written into bash against ``make run``'s launcher.

Every shell block of the section runs in order in one bash (``set -euo pipefail``), in a folder
laid out like a checkout (``.venv``, ``data`` and ``.run`` are links to the real ones), with one
change: the API's addresses (HTTP and gRPC), since the test's launcher listens on free ports. The first model is a
copy of the suite's v1 (about 95% dev, standing in for ``make run``'s 98%), so the README's
1-epoch candidate is not promoted here either. The answers the README shows are checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import ModelRegistry
from tests.deploy.launcher import Launcher
from tests.support import REPO_ROOT

README = REPO_ROOT / "README.md"


def using_it_blocks() -> list[str]:
    """The ```sh blocks of the README's "## Using it" section, in order."""
    text = README.read_text()
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_examples_this_test_checks() -> None:
    script = "\n".join(using_it_blocks())
    for command in (":predict", "tritonclient.grpc", "/v1/jobs/score", "wait_job $JOB", ":explain",
                    "/aliases/production", '"model": "digits-small"', "/readyz"):
        assert command in script, command


@pytest.fixture()
def launcher(tmp_path: Path, mnist_dir: Path, base_registry: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, mnist_dir)
    shutil.copytree(base_registry, launcher.models)
    shutil.rmtree(launcher.models / "mnist" / "2")  # the README starts from one version
    del launcher.env["API_KEY"]  # make run's own: generated into .run/api-key
    try:
        yield launcher
    finally:
        launcher.stop()


@pytest.mark.timeout(300)
def test_using_it_runs_as_pasted(launcher: Launcher, tmp_path: Path, mnist_dir: Path) -> None:
    launcher.start()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name, target in ((".venv", REPO_ROOT / ".venv"), ("data", mnist_dir), (".run", launcher.run_dir)):
        (checkout / name).symlink_to(target)
    script = "\n".join(using_it_blocks())
    assert script.count("API=http://127.0.0.1:8000\n") >= 1
    script = script.replace("API=http://127.0.0.1:8000\n", f"API={launcher.url}\n", 1)
    script = script.replace("GRPC=127.0.0.1:8001 ", f"GRPC=127.0.0.1:{launcher.grpc_port} ", 1)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("API", "MODELS_DIR"))}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=240)
    out = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\n{out[-3000:]}\n{run.stderr[-3000:]}"

    assert re.search(r'^\{"predictions":\[\{"label":7,"probabilities":\[', out, flags=re.M), out[:500]
    assert re.search(r'"model_version":1\}$', out, flags=re.M)
    assert "ImageId,Label\n1,7\n2,2\n" in out
    assert "7 28 x 28\n" in out
    assert "[7 2 1] 1\n" in out  # gRPC, through tritonclient
    not_promoted = r"^done: version 2 published, not promoted - dev accuracy 0\.\d+ vs production v1 0\.\d+$"
    assert re.search(not_promoted, out, flags=re.M), out
    promoted = '{"model":"mnist","alias":"production","version":2,"previous_version":1,"aliases":{"production":2}}'
    rolled_back = '{"model":"mnist","alias":"production","version":1,"previous_version":2,"aliases":{"production":1}}'
    assert promoted in out and rolled_back in out
    assert "['digits-small', 'mnist']\n" in out
    assert re.search(r'"status":"ready"', out)
    assert re.search(r"^mnist_predictions_total\{", out, flags=re.M)
    assert ModelRegistry(launcher.models).aliases("mnist") == {"production": 1}
    assert '"error":"' not in out  # "error":null is fine, a message is not

    # Files only in scratch/, which git ignores in a real checkout; the whole result was downloaded.
    assert sorted(os.listdir(checkout)) == [".run", ".venv", "data", "scratch"]
    assert sorted(os.listdir(checkout / "scratch")) == ["digits.json", "explain.json", "submission.csv", "test.csv"]
    assert len((checkout / "scratch" / "submission.csv").read_text().splitlines()) == 1001
    assert subprocess.run(["git", "check-ignore", "-q", "scratch/test.csv"], cwd=REPO_ROOT).returncode == 0
