"""The cheap request hooks: probes counted but not timed, request totals derived at /metrics,
sampled access logs that still log every error. In process (``make_client``); the aggregation
across gunicorn workers is covered by test_operations.py."""

from __future__ import annotations

import io
import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.access_log import AccessLog


def _families(client) -> dict:
    return {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}


def _value(family, suffix: str, **labels: str) -> float:
    return sum(s.value for s in family.samples
               if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items()))


def test_probes_counted_not_timed_and_totals_match_the_histogram(make_client, base_registry, digits):
    client = make_client(base_registry)
    before = _families(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    for _ in range(2):
        assert client.post("/v1/models/mnist:predict", json={"instances": digits[0][:2].tolist()}).status_code == 200
    assert client.post("/v1/models/mnist:predict", json={"instances": "x"}).status_code == 422
    after = _families(client)

    def delta(name: str, suffix: str, **labels: str) -> float:
        return _value(after[name], suffix, **labels) - _value(before[name], suffix, **labels)

    predict = "/v1/models/<name>:predict"
    totals = "mnist_http_requests"
    assert delta(totals, "_total", endpoint="/healthz", method="GET", status="200") == 3
    assert delta(totals, "_total", endpoint=predict, method="POST", status="200") == 2
    assert delta(totals, "_total", endpoint=predict, method="POST", status="422") == 1
    latency = "mnist_http_request_duration_seconds"
    assert delta(latency, "_count", endpoint=predict, status="200") == 2
    assert _value(after[latency], "_count", endpoint="/healthz") == 0  # probes are not timed
    assert "mnist_http_untimed_requests" not in after  # internal: shown only inside the totals
    # every timed request's total equals its histogram count, label set by label set
    for sample in after[latency].samples:
        if sample.name.endswith("_count"):
            assert _value(after[totals], "_total", **sample.labels) == sample.value


def test_access_log_sample_zero_still_logs_errors(make_client, base_registry, digits, access_lines):
    client = make_client(base_registry, access_log_sample=0.0)
    assert client.post("/v1/models/mnist:predict", json={"instances": digits[0][:1].tolist()}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/models/mnist:predict", json={"instances": [[300] * 784]}).status_code == 422
    assert client.get("/v1/models/nope").status_code == 404
    assert [(line["status"], line["path"]) for line in access_lines] == [
        (422, "/v1/models/mnist:predict"), (404, "/v1/models/nope")]


def test_access_log_default_logs_every_request(make_client, base_registry, access_lines):
    client = make_client(base_registry)
    for _ in range(5):
        client.get("/healthz")
    assert len(access_lines) == 5 and {line["endpoint"] for line in access_lines} == {"/healthz"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["ts"]) for line in access_lines)


def test_access_log_sample_is_a_share(make_client, base_registry, access_lines):
    client = make_client(base_registry, access_log_sample=0.25)
    for _ in range(400):
        client.get("/healthz")
    assert 40 <= len(access_lines) <= 170  # binomial(400, 0.25): mean 100, sd 8.7


def test_access_log_sample_out_of_range_is_refused(make_client, base_registry):
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match="ACCESS_LOG_SAMPLE"):
        make_client(base_registry, access_log_sample=1.5)


def test_access_lines_go_straight_to_the_default_handler_until_logging_is_customised(tmp_path):
    """The direct write and logging's path give the same lines; a filter or a second handler is honoured."""
    log = AccessLog(logging.getLogger(f"test.access.{tmp_path.name}"))
    log.configure()
    assert log.handler is not None
    stream = io.StringIO()
    log.handler.setStream(stream)
    log.write('{"n":1}')  # direct
    collected = []
    extra = logging.Handler()
    extra.emit = lambda record: collected.append(record.getMessage())
    log.logger.addHandler(extra)
    log.write('{"n":2}')  # through logging: both handlers
    log.logger.removeHandler(extra)
    log.logger.addFilter(lambda record: '"n":3' not in record.getMessage())
    log.write('{"n":3}')  # filtered out
    log.write('{"n":4}')
    assert stream.getvalue() == '{"n":1}\n{"n":2}\n{"n":4}\n'
    assert collected == ['{"n":2}']


def test_access_log_leaves_a_logger_configured_elsewhere_alone(tmp_path):
    logger = logging.getLogger(f"test.access.{tmp_path.name}")
    collected = []
    own = logging.Handler()
    own.emit = lambda record: collected.append(record.getMessage())
    logger.addHandler(own)
    logger.setLevel(logging.INFO)
    log = AccessLog(logger)
    log.configure()
    assert log.handler is None and logger.handlers == [own]
    log.write('{"n":1}')
    assert collected == ['{"n":1}']
