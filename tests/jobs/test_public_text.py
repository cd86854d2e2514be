"""Job errors shown to clients name configured folders, never server paths (service.jobs.queue.public_text)."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from service.app import create_app
from service.jobs.queue import public_text


def test_nested_folders_get_their_own_names_and_only_whole_segments_match(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    app = create_app(Settings(jobs_dir=root, data_dir=root / "data", models_dir=tmp_path / "models",
                              redis_url="redis://127.0.0.1:1/0"))
    with app.app_context():
        text = public_text(f"read {root}/data/x.csv, wrote {root}2/a.csv and {root}/j/upload.csv")
    assert text == "read DATA_DIR/x.csv, wrote a.csv and JOBS_DIR/j/upload.csv"  # other paths: the file name
    assert str(tmp_path) not in text
