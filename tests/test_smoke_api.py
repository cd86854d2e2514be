"""The app starts under real gunicorn and reports the production model as ready."""

import requests


def test_readyz_reports_production_model(api):
    body = requests.get(api.url + "/readyz", timeout=5).json()
    assert body["status"] == "ready"
    assert body["model_version"] == 1
    assert body["redis"] is True
