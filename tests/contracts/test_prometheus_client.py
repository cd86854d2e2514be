"""prometheus-client: the private ``_name`` service/metrics.py compares collected families with.

``_RequestTotals`` (a ``prometheus_client.registry.Collector``) builds ``mnist_http_requests_total``
from the latency histogram's ``_count`` samples and the probes' counter, finding their families by
``family.name == metric._name``. Under gunicorn the families come from
``MultiProcessCollector`` (multiprocess mode, which a process enters only at import time: checked
in a child process), in one process from the default registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from service import metrics
from tests.contracts.contract import Contract
from tests.support import REPO_ROOT

PROMETHEUS = Contract("prometheus-client")

# Families by name and their samples' names, for a counter and a histogram as service/metrics.py makes them.
_FAMILIES = textwrap.dedent("""
    import json, sys
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.multiprocess import MultiProcessCollector

    counter = Counter("contract_untimed_requests", "probes", ["endpoint"])
    histogram = Histogram("contract_request_duration_seconds", "latency", ["endpoint"], buckets=(0.1, 1.0))
    counter.labels("/healthz").inc()
    histogram.labels("/v1").observe(0.05)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    families = {family.name: sorted({sample.name for sample in family.samples}) for family in registry.collect()}
    json.dump({"names": [counter._name, histogram._name], "families": families}, sys.stdout)
""")


def test_the_names_the_project_uses_from_prometheus_client() -> None:
    PROMETHEUS.names_used("prometheus_client")


def test_a_metric_s_private_name_is_its_family_s_name() -> None:
    registry = CollectorRegistry()
    counter = Counter("contract_untimed_requests", "probes", ["endpoint"], registry=registry)
    histogram = Histogram("contract_request_duration_seconds", "latency", ["endpoint"], buckets=(0.1, 1.0),
                          registry=registry)
    counter.labels("/healthz").inc()
    histogram.labels("/v1").observe(0.05)
    for metric, expected in [(counter, "contract_untimed_requests"), (histogram, "contract_request_duration_seconds")]:
        name = PROMETHEUS.attribute(metric, "_name", f"{type(metric).__name__}()._name")
        PROMETHEUS.check(name == expected, f"{type(metric).__name__}()._name is {name!r}, not {expected!r}")
    families = {family.name: {sample.name for sample in family.samples} for family in registry.collect()}
    PROMETHEUS.check("contract_untimed_requests_total" in families.get(counter._name, set()),
                     f"no family named Counter._name with a _total sample: {families}")
    PROMETHEUS.check("contract_request_duration_seconds_count" in families.get(histogram._name, set()),
                     f"no family named Histogram._name with a _count sample: {families}")
    PROMETHEUS.check(metrics.UNTIMED._name == "mnist_http_untimed_requests"
                     and metrics.LATENCY._name == "mnist_http_request_duration_seconds",
                     f"service.metrics' metrics are named {metrics.UNTIMED._name!r} and {metrics.LATENCY._name!r}")


def test_multiprocess_families_are_named_by_the_private_name(tmp_path: Path) -> None:
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with PROMETHEUS.behaviour("collecting a counter and a histogram in multiprocess mode (a child process)"):
        run = subprocess.run([sys.executable, "-c", _FAMILIES], env=environment, cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60, check=True)
        found = json.loads(run.stdout)
    counter_name, histogram_name = found["names"]
    families = found["families"]
    PROMETHEUS.check("contract_untimed_requests_total" in families.get(counter_name, []),
                     f"multiprocess mode: no family named Counter._name with a _total sample: {families}")
    PROMETHEUS.check("contract_request_duration_seconds_count" in families.get(histogram_name, []),
                     f"multiprocess mode: no family named Histogram._name with a _count sample: {families}")


def test_the_requests_total_is_built_from_the_histogram_and_the_counter() -> None:
    # In this process (no PROMETHEUS_MULTIPROC_DIR): the default registry, with labels no other test uses.
    metrics.UNTIMED.labels("/contract-probe", "GET", "200", "").inc()
    metrics.LATENCY.labels("/contract-timed", "POST", "200", "").observe(0.01)
    with PROMETHEUS.behaviour("service.metrics.generate_latest()"):
        text = metrics.generate_latest().decode()
    for endpoint in ("/contract-probe", "/contract-timed"):
        line = f'mnist_http_requests_total{{endpoint="{endpoint}",method="'
        PROMETHEUS.check(line in text, f"/metrics has no {metrics.REQUESTS_NAME}_total for {endpoint}: the families "
                         "were not found by their _name")
