"""The runner of ``python -m bench.peers``: start the servers, check they agree, alternate wrk over them.

Kept apart from ``bench.peers``, whose functions the peer servers themselves import.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import requests

from bench.http import ensure_model
from bench.peers import REPO, ensure_peers_venv
from bench.wrk import WrkResult, cpu_seconds, lua_script, run_wrk, wrk_binary
from core.datasets import load_dataset
from tests.support import MNIST_DIR, free_port, stop_process, wait_until

ONE_THREAD_BLAS = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    health: str
    cwd: Path = REPO
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logdir: Path) -> None:
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        env = {**os.environ, **ONE_THREAD_BLAS, **self.env, "BIND": f"127.0.0.1:{self.port}"}
        log = open(logdir / f"{self.name.replace(' ', '_')}.log", "ab")  # noqa: SIM115 (the server's lifetime)
        self.proc = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc.poll() is not None:
                tail = Path(log.name).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            with contextlib.suppress(requests.RequestException):
                return requests.get(self.url + self.health, timeout=1).status_code == 200
            return False

        wait_until(up, 90, self.name)

    def pids(self) -> list[int]:
        """The server's processes: the launcher and all its descendants (workers)."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        found = [self.proc.pid]
        for pid in found:
            found += [child for child, parent in parents.items() if parent == pid]
        return found

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)


@dataclass
class Entry:
    """One row of the table: a server and the request it is sent."""

    name: str
    server: Server
    path: str
    kind: str  # "v1" or "v2"


def gunicorn_ours(name: str, checkout: Path, models: Path, args: argparse.Namespace) -> Server:
    return Server(name, [sys.executable, "-m", "gunicorn", "-c", str(checkout / "deploy" / "gunicorn.conf.py"),
                         "service:create_app()"],
                  {"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "LOG_LEVEL": "WARNING",
                   "WEB_CONCURRENCY": str(args.workers), "THREADS": str(args.threads),
                   **dict(pair.split("=", 1) for pair in args.env)}, "/healthz", cwd=checkout)


def servers_for(args: argparse.Namespace, models: Path) -> list[Entry]:
    ours = gunicorn_ours("mnist-serve", REPO, models, args)
    entries = [Entry("mnist-serve V1", ours, "/v1/models/mnist:predict", "v1"),
               Entry("mnist-serve V2", ours, "/v2/models/mnist/infer", "v2")]
    for variant in args.variant:  # other configurations of this checkout, e.g. gevent:WORKER_CLASS=gevent
        label, _, settings = variant.partition(":")
        other = gunicorn_ours(f"mnist-serve {label}", REPO, models, args)
        other.env.update(pair.split("=", 1) for pair in settings.split(",") if pair)
        entries.insert(1, Entry(f"mnist-serve V1, {label}", other, "/v1/models/mnist:predict", "v1"))
    if args.repo_before is not None:
        before = gunicorn_ours("mnist-serve before", args.repo_before, models, args)
        entries.append(Entry("mnist-serve V1, before", before, "/v1/models/mnist:predict", "v1"))
    kserve = Server("KServe", [str(ensure_peers_venv()), "-m", "bench.peers_kserve", "{port}", str(models),
                               str(args.workers)], {}, "/v2/health/live")
    entries.append(Entry(f"KServe {args.kserve_version} V1", kserve, "/v1/models/mnist:predict", "v1"))
    # The floor runs under mnist-serve's own gunicorn settings (worker class, threads, socket): what
    # is left between the two is our per-request code.
    bare = gunicorn_ours("bare Flask", REPO, models, args)
    bare.command[-1] = "bench.peers:bare_app()"
    entries.append(Entry("bare Flask + gunicorn", bare, "/v1/models/mnist:predict", "v1"))
    return entries


def bodies(digits: np.ndarray, kind: str, n: int) -> bytes:
    rows = digits[:n].astype(int)
    if kind == "v1":
        return orjson.dumps({"instances": rows.tolist()})
    return orjson.dumps({"inputs": [{"name": "pixels", "shape": [n, 784], "datatype": "UINT8",
                                     "data": rows.ravel().tolist()}]})


def labels_of(entry: Entry, digits: np.ndarray) -> list[int]:
    answer = requests.post(entry.server.url + entry.path, data=bodies(digits, entry.kind, 100),
                           headers={"Content-Type": "application/json"}, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    if entry.kind == "v1":
        return [p["label"] for p in body["predictions"]]
    return next(o["data"] for o in body["outputs"] if o["name"] == "labels")


def main() -> None:
    parser = argparse.ArgumentParser(description="mnist-serve against KServe's model server and a bare Flask floor")
    parser.add_argument("--models-dir", type=Path,
                        help="registry with a production 'mnist' (default: train 784-1024-10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="for mnist-serve's gunicorn")
    parser.add_argument("--repo-before", type=Path, help="another checkout of mnist-serve, measured beside this one")
    parser.add_argument("--variant", nargs="*", default=[], metavar="LABEL:NAME=VALUE,...",
                        help="more mnist-serve configurations in the same rounds, e.g. gevent:WORKER_CLASS=gevent")
    parser.add_argument("--scenarios", nargs="*", default=[title for title, _, _ in SCENARIOS],
                        help="a subset of the columns, by title")
    args = parser.parse_args()
    if wrk_binary() is None:
        raise SystemExit("bench.peers needs wrk: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SCENARIOS = (("1 instance @ 4", 1, 4), ("1 instance @ 8", 1, 8), ("1 instance @ 64", 1, 64),
             ("1,000 JSON @ 4", 1000, 4))


def run(args: argparse.Namespace, tmp: Path) -> None:
    models = ensure_model(args.models_dir, MNIST_DIR, [1024], root=tmp / "models")
    query = "from importlib.metadata import version; print(version('kserve'))"
    version = subprocess.run([str(ensure_peers_venv()), "-c", query],
                             capture_output=True, text=True, check=True).stdout.strip()
    args.kserve_version = version
    digits = load_dataset(MNIST_DIR).X[:1000]
    entries = servers_for(args, models)
    servers = list({id(e.server): e.server for e in entries}.values())
    (tmp / "logs").mkdir()
    scripts: dict[tuple[str, int], Path] = {}
    for kind in ("v1", "v2"):
        for n in (1, 1000):
            (tmp / f"{kind}_{n}.body").write_bytes(bodies(digits, kind, n))
            scripts[(kind, n)] = lua_script(tmp / f"{kind}_{n}.lua", "POST", {"Content-Type": "application/json"},
                                            tmp / f"{kind}_{n}.body", server_timing=False)
    try:
        for server in servers:
            server.start(tmp / "logs")
        reference = labels_of(entries[0], digits)
        for entry in entries:
            agree = sum(a == b for a, b in zip(labels_of(entry, digits), reference, strict=True))
            print(f"{entry.name}: {agree}/100 labels agree with {entries[0].name}")
            if agree != 100:
                raise SystemExit("the servers disagree: nothing to compare")
        results: dict[tuple[str, str], list[tuple[WrkResult, list[float]]]] = {}
        load_before = os.getloadavg()
        for round_ in range(args.rounds):
            for title, n, connections in [s for s in SCENARIOS if s[0] in args.scenarios]:
                order = entries if round_ % 2 == 0 else entries[::-1]
                for entry in order:
                    if entry.kind == "v2" and n > 1:
                        continue  # V2's 1,000-instance case is bench.http's (binary); JSON V1 is compared
                    pids = entry.server.pids()
                    before, started = [_cpu(p) for p in pids], time.monotonic()
                    result = run_wrk(entry.server.url + entry.path, connections, args.seconds, scripts[(entry.kind, n)])
                    wall = time.monotonic() - started
                    cores = [(_cpu(p) - b) / wall for p, b in zip(pids, before, strict=True)]
                    results.setdefault((entry.name, title), []).append((result, cores))
        report(entries, results, args, load_before)
    finally:
        for server in servers:
            server.stop()


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


def report(entries: list[Entry], results: dict, args: argparse.Namespace, load_before: tuple) -> None:
    print(f"\n{args.workers} workers each ({args.threads} threads where threaded), {args.env or 'default env'}; "
          f"wrk -t1, {args.seconds:.0f} s per cell, median of {args.rounds} alternating rounds; load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    median: dict[tuple[str, str], tuple[WrkResult, list[float]]] = {}
    for key, runs in results.items():
        runs.sort(key=lambda run: run[0].rps)
        median[key] = runs[len(runs) // 2]
    print(f"| server | {' | '.join(title for title in args.scenarios)} | max wrk CPU |")
    print(f"|---|{'---:|' * len(args.scenarios)}---:|")
    for entry in entries:
        cells = []
        for title, _, _ in SCENARIOS:
            if title not in args.scenarios:
                continue
            found = median.get((entry.name, title))
            cells.append("-" if found is None else f"{found[0].rps:,.1f}, p99 {found[0].p99_ms:.1f}")
        wrk_cpu = max(run[0].wrk_cpu for (name, _), runs in results.items() if name == entry.name for run in runs)
        print(f"| {entry.name} | {' | '.join(cells)} | {wrk_cpu:.0%} |")
    # On a shared machine a server's req/s follows the CPU share the scheduler gave it; the server's
    # own CPU per request (all its processes) is the load-robust view of the same runs.
    print("\nserver CPU per request, ms (lower is better):")
    print(f"| server | {' | '.join(title for title in args.scenarios)} |")
    print(f"|---|{'---:|' * len(args.scenarios)}")
    for entry in entries:
        cells = [f"{sum(median[(entry.name, t)][1]) / median[(entry.name, t)][0].rps * 1000:.3f}"
                 if (entry.name, t) in median else "-" for t in args.scenarios]
        print(f"| {entry.name} | {' | '.join(cells)} |")
    ours = "mnist-serve V1"
    for other in [e.name for e in entries if e.name != ours]:
        ratios = [f"{title} {median[(ours, title)][0].rps / median[(other, title)][0].rps:.2f}"
                  for title in args.scenarios if (other, title) in median]
        print(f"{ours} / {other}: " + ", ".join(ratios))
    print("busiest processes' CPU (cores) at 4 connections, every round (both cores busy: two near 1):")
    for entry in entries:
        rounds = ["+".join(f"{c:.2f}" for c in sorted(cores, reverse=True)[:2])
                  for _, cores in results.get((entry.name, "1 instance @ 4"), [])]
        print(f"  {entry.name}: {'; '.join(rounds)}")
