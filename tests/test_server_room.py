"""service/server/ without a server: which requests the inline worker answers on its main thread,
which proxies the API trusts, and the config file that names them."""

from __future__ import annotations

import os
import runpy

import pytest

from service.server.hooks import trusted_proxy
from service.server.inline import whole_prediction
from tests.support import REPO_ROOT

BODY = b'{"instances": [[0, 1, 2]]}'


def _request(line: str = "POST /v1/models/mnist:predict HTTP/1.1", fields: str = "", body: bytes = BODY,
             length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return f"{line}\r\nHost: x\r\nContent-Length: {length}\r\n{fields}\r\n".encode() + body


@pytest.mark.parametrize(("head", "inline"), [
    (_request(), True),
    (_request("POST /v2/models/mnist/versions/2/infer HTTP/1.1"), True),
    (_request("POST /v1/models/mnist:predict?x=1 HTTP/1.0"), True),
    (_request(length=len(BODY) + 1), False),  # the body is still arriving
    (_request()[:20], False),  # the head is still arriving
    (_request("GET /v1/models/mnist HTTP/1.1", body=b"", length=0), False),  # not a prediction
    (_request("POST /v1/jobs/score HTTP/1.1"), False),  # may wait on Redis or the disk
    (_request(fields="Transfer-Encoding: chunked\r\n"), False),
    (_request(fields="Expect: 100-continue\r\n"), False),
    (_request(fields="Content-Type: multipart/form-data; boundary=x\r\n"), False),
    (_request(body=b'{"instances": [{"b64": "iVBORw0KGgo="}]}'), False),  # images wait for the decode budget
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
])
def test_only_whole_prediction_requests_are_answered_inline(head: bytes, inline: bool):
    assert whole_prediction(head) is inline


def test_forwarded_addresses_are_trusted_from_the_configured_proxies_only():
    assert trusted_proxy("127.0.0.1", ["127.0.0.1", "::1"])
    assert trusted_proxy("10.1.2.3", ["10.0.0.0/8"])
    assert not trusted_proxy("192.168.1.5", ["127.0.0.1", "10.0.0.0/8"])
    assert trusted_proxy("192.168.1.5", ["*"])
    assert trusted_proxy("", ["127.0.0.1"])  # a unix socket peer, as gunicorn trusts it


@pytest.mark.parametrize(("env", "worker"), [
    ({}, "service.server.inline.InlineThreadWorker"),
    ({"MAX_BATCH_SIZE": "8"}, "service.server.balanced.BalancedThreadWorker"),
    ({"WORKER_CLASS": "gthread"}, "gthread"),
])
def test_the_config_file_holds_settings_and_names_the_worker_classes(monkeypatch, tmp_path, env, worker):
    for name in ("WORKER_CLASS", "MAX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "THREADS"):  # restored afterwards
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = runpy.run_path(str(REPO_ROOT / "deploy" / "gunicorn.conf.py"))
    assert settings["worker_class"] == worker
    classes = [name for name, value in settings.items() if isinstance(value, type)]
    assert classes == [], f"the config file defines classes: {classes}"
