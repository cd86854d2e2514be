"""The proxy in front of gunicorn: slow clients cannot starve the API, nginx's own errors keep the
API's JSON error contract, big bodies still go through, and the access log shows the real client.

Real gunicorn (the conftest's ``start_api``) behind real nginx configured by deploy/nginx-config,
the script both run modes use. On main's setup (gunicorn alone) the slow-client scenario below
answers none of the normal client's predictions: bench/slow_clients.py runs it against both.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from core.datasets import Dataset
from tests.deploy.helpers import kaggle_test_csv
from tests.deploy.proxy import NginxProxy, nginx_binary, slow_client_scenario
from tests.support import REPO_ROOT, GunicornServer, free_port

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (apt-get install nginx-light)")

TIMEOUT = 3  # the proxy's header and body timeouts in these tests, seconds
SMALL_BODY_LIMIT = 200_000


@pytest.fixture()
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., NginxProxy]]:
    proxies: list[NginxProxy] = []

    def start(upstream: str, **env: str) -> NginxProxy:
        base = {"PROXY_HEADER_TIMEOUT": str(TIMEOUT), "PROXY_BODY_TIMEOUT": str(TIMEOUT)}
        proxy = NginxProxy(upstream, tmp_path / f"nginx{len(proxies)}", {**base, **env})
        proxies.append(proxy)
        proxy.start()
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture()
def proxied(start_api: Callable[..., GunicornServer], start_proxy: Callable[..., NginxProxy], models_dir: Path
            ) -> tuple[GunicornServer, NginxProxy]:
    # gunicorn's default 2 workers x 4 threads: 8 slow sockets would be enough to stop it alone.
    api = start_api(models_dir, THREADS="4")
    return api, start_proxy(f"127.0.0.1:{api.port}")


def test_slow_clients_do_not_starve_predictions_and_are_closed(proxied: tuple[GunicornServer, NginxProxy],
                                                               mnist: Dataset) -> None:
    _, proxy = proxied
    slow = 64  # 8 x gunicorn's threads; half trickle a header (1 byte/s), half a body
    body_interval = TIMEOUT + 2  # a body byte less often than the body timeout: a stalled upload
    result = slow_client_scenario(proxy.port, mnist.X[:1].astype(int).tolist(), slow, seconds=12,
                                  request_timeout=5, body_interval=body_interval)
    assert result.attempts >= 20
    assert result.success_fraction >= 0.95, result

    closes = result.slow.seconds_to_close
    # Every one of the first 64 sockets was closed by nginx (and reopened), header and body alike,
    # after its timeout and not before; bounds generous for a busy machine.
    assert len(closes["header"]) >= slow // 2 and len(closes["body"]) >= slow // 2, result.slow
    assert all(TIMEOUT - 0.5 <= t <= TIMEOUT + 10 for t in closes["header"]), closes["header"]
    assert all(TIMEOUT - 0.5 <= t <= body_interval + TIMEOUT + 10 for t in closes["body"]), closes["body"]


def test_errors_from_the_proxy_itself_are_json(start_api: Callable[..., GunicornServer],
                                               start_proxy: Callable[..., NginxProxy], models_dir: Path) -> None:
    limits = {"MAX_BODY_BYTES": str(SMALL_BODY_LIMIT), "MAX_UPLOAD_BYTES": str(2 * SMALL_BODY_LIMIT)}
    api = start_api(models_dir, **limits)
    proxy = start_proxy(f"127.0.0.1:{api.port}", **limits)

    too_big = requests.post(proxy.url + "/v1/models/mnist:predict", data=b"x" * (SMALL_BODY_LIMIT + 1),
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 413
    assert too_big.headers["Content-Type"] == "application/json"
    assert f"limit of {SMALL_BODY_LIMIT} bytes (MAX_BODY_BYTES)" in too_big.json()["error"]

    upload = requests.post(proxy.url + "/v1/jobs/score", data=b"x" * (2 * SMALL_BODY_LIMIT + 1),
                           headers={"Content-Type": "text/csv"}, timeout=30)
    assert upload.status_code == 413 and "(MAX_UPLOAD_BYTES)" in upload.json()["error"]

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        head, _, body = sock.recv(4096).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and "error" in json.loads(body)
    huge_header = requests.get(proxy.url + "/healthz", headers={"X-Big": "x" * 20_000}, timeout=10)
    assert huge_header.status_code == 431 and "header" in huge_header.json()["error"]

    # Errors gunicorn answers pass through untouched.
    missing = requests.get(proxy.url + "/v1/models/nosuchmodel", timeout=10)
    assert missing.status_code == 404 and "nosuchmodel" in missing.json()["error"]

    down = start_proxy(f"127.0.0.1:{free_port()}")  # nothing listens there
    response = requests.get(down.url + "/readyz", timeout=10)
    assert response.status_code == 502 and "not answering" in response.json()["error"]


def test_large_bodies_pass_through_and_leave_no_temp_files(proxied: tuple[GunicornServer, NginxProxy],
                                                     mnist: Dataset) -> None:
    _, proxy = proxied
    # The largest prediction request MAX_INSTANCES allows (4,096 digits, ~8 MB of JSON) and a
    # 60,000-row CSV upload (~110 MB): both well above nginx's 64 KiB memory buffer.
    instances = mnist.X[:4096].astype(int).tolist()
    response = requests.post(proxy.url + "/v1/models/mnist:predict", json={"instances": instances}, timeout=120)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 4096

    csv = kaggle_test_csv(mnist, slice(0, 10_000))
    header, rows = csv.split(b"\n", 1)
    upload = header + b"\n" + rows * 6
    submitted = requests.post(proxy.url + "/v1/jobs/score", data=upload, headers={"Content-Type": "text/csv"},
                              timeout=300)
    assert submitted.status_code == 202, submitted.text
    assert requests.get(proxy.url + submitted.headers["Location"], timeout=10).status_code == 200
    temp = proxy.workdir / "prefix" / "client_body"
    assert not [p for p in temp.rglob("*") if p.is_file()]  # the prediction's spooled body was deleted


def _start_upload(proxy: NginxProxy, length: int, first_bytes: bytes) -> socket.socket:
    """A raw ``POST /v1/jobs/score`` announcing ``length`` bytes, of which only ``first_bytes`` are sent."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    sock.sendall(f"POST /v1/jobs/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
                 f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode() + first_bytes)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_job_uploads_stream_to_the_app_which_judges_them_before_storing(
        start_api: Callable[..., GunicornServer], start_proxy: Callable[..., NginxProxy], models_dir: Path,
        mnist: Dataset) -> None:
    """Uploads are not spooled by nginx: an upload over JOBS_DISK_BUDGET_BYTES is refused from its
    Content-Length while the client has sent only its header, and nothing lands in nginx's temp
    folder; PROXY_MAX_UPLOADS caps the uploads streaming at once with a JSON 503."""
    api = start_api(models_dir, JOBS_DISK_BUDGET_BYTES="1000000")
    proxy = start_proxy(f"127.0.0.1:{api.port}", PROXY_MAX_UPLOADS="1")
    temp = proxy.workdir / "prefix" / "client_body"

    over_budget = _start_upload(proxy, 50_000_000, b"")  # 50 MB announced, none of it sent
    status, body = _read_response(over_budget)
    over_budget.close()
    assert status == 507 and "JOBS_DISK_BUDGET_BYTES" in body["error"], body

    csv = kaggle_test_csv(mnist, slice(0, 200))
    streaming = _start_upload(proxy, len(csv), csv[:1000])  # holds the one upload slot
    time.sleep(0.5)
    assert not [p for p in temp.rglob("*") if p.is_file()]  # nginx keeps no copy of it
    second = requests.post(proxy.url + "/v1/jobs/score", data=csv, headers={"Content-Type": "text/csv"}, timeout=30)
    assert second.status_code == 503 and "PROXY_MAX_UPLOADS" in second.json()["error"], second.text
    # Predictions are not uploads: they keep going while the slot is taken.
    assert requests.get(proxy.url + "/healthz", timeout=10).status_code == 200
    streaming.sendall(csv[1000:])
    status, body = _read_response(streaming)
    streaming.close()
    assert status == 202, body
    # The slot frees when nginx finishes the first request: after its lingering close sees our
    # FIN, a moment after we read the answer. A client told "retry shortly" retries: so does this.
    deadline = time.monotonic() + 10
    while True:
        after = requests.post(proxy.url + "/v1/jobs/score", data=csv, headers={"Content-Type": "text/csv"},
                              timeout=30)
        if after.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after.status_code == 202, after.text


def test_access_log_shows_the_real_client(proxied: tuple[GunicornServer, NginxProxy]) -> None:
    api, proxy = proxied
    # A client on another loopback address, which also tries to forge X-Forwarded-For: nginx
    # replaces the header with the address it saw, and gunicorn takes it from nginx only.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=("127.0.0.7", 0)) as sock:
        sock.sendall(b"GET /healthz?via=proxy HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    with socket.create_connection(("127.0.0.1", api.port), timeout=10, source_address=("127.0.0.8", 0)) as sock:
        sock.sendall(b"GET /healthz?via=direct HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")

    time.sleep(0.5)  # the access line is written after the response
    lines = [json.loads(line) for line in api.log_path.read_text().splitlines()
             if line.startswith("{") and '"event":"access"' in line and '"/healthz"' in line]
    remotes = [entry["remote"] for entry in lines]
    assert "127.0.0.7" in remotes  # through nginx: the real client
    assert "127.0.0.8" in remotes  # directly from an untrusted address: the header is ignored
    assert "203.0.113.9" not in remotes


def test_run_local_without_nginx_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "NGINX": str(tmp_path / "no-nginx"), "RUN_DIR": str(tmp_path / "run"),
           "API_PORT": str(free_port())}
    result = subprocess.run([str(REPO_ROOT / "deploy" / "run-local")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "apt-get install nginx-light" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before it touched anything
