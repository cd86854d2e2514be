"""An API process imports neither pandas nor the trainer: predictions need numpy and the registry
only, and every gunicorn worker would otherwise pay pandas' import time and memory (pandas is
for reading CSV files, which the RQ worker does); nor grpc, which a gunicorn worker starts only
when GRPC_PORT is set (service.server.hooks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
import service
from core.settings import Settings
service.create_app(Settings(models_dir=sys.argv[1], jobs_dir=sys.argv[2], data_dir=sys.argv[2]))
print(json.dumps({name: name in sys.modules for name in ("pandas", "trainer", "worker", "grpc")}))
"""


def test_creating_the_app_imports_no_pandas(tmp_path: Path) -> None:
    # A fresh interpreter: this test session has long imported pandas itself.
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "models"), str(tmp_path / "jobs")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == {"pandas": False, "trainer": False, "worker": False, "grpc": False}
