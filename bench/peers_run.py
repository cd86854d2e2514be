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

import grpc
import numpy as np
import orjson
import requests

from bench.h2load import answered_calls, grpc_frame, h2load_binary, infer_request, run_h2load
from bench.http import ensure_model
from bench.peers import PEERS, REPO, ensure_peer_venv, peer_version
from bench.wrk import WrkResult, cpu_seconds, lua_script, run_wrk, wrk_binary
from core.datasets import load_dataset
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
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
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logdir: Path) -> None:
        command = [part.replace("{port}", str(self.port)).replace("{grpc_port}", str(self.grpc_port))
                   for part in self.command]
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
    kind: str  # "v1", "v2" (JSON over HTTP, under wrk) or "grpc" (ModelInfer with raw contents, under h2load)


def gunicorn_ours(name: str, checkout: Path, models: Path, args: argparse.Namespace) -> Server:
    server = Server(name, [sys.executable, "-m", "gunicorn", "-c", str(checkout / "deploy" / "gunicorn.conf.py"),
                           "service:create_app()"],
                    {"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                     "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": str(args.workers), "THREADS": str(args.threads),
                     **dict(pair.split("=", 1) for pair in args.env)}, "/healthz", cwd=checkout)
    server.env.update(GRPC_PORT=str(server.grpc_port), GRPC_HOST="127.0.0.1")
    return server


def peer(name: str, module: str, args: argparse.Namespace, *extra: str, health: str = "/v2/health/ready") -> Server:
    """A peer server run by its own virtualenv's python, importing bench.peers and core from here."""
    return Server(name, [str(ensure_peer_venv(module.removeprefix("bench.peers_"))), "-m", module, *extra],
                  {"PYTHONPATH": str(REPO)}, health)


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
    entries.append(Entry("mnist-serve gRPC", ours, "", "grpc"))
    models_arg, workers = str(models), str(args.workers)
    if "kserve" in args.peers:
        kserve = peer("KServe", "bench.peers_kserve", args, "{port}", "{grpc_port}", models_arg, workers,
                      health="/v2/health/live")
        version = peer_version("kserve")
        entries += [Entry(f"KServe {version} V1", kserve, "/v1/models/mnist:predict", "v1"),
                    Entry(f"KServe {version} gRPC", kserve, "", "grpc")]
    if "mlserver" in args.peers:
        mlserver = peer("MLServer", "bench.peers_mlserver", args, "{port}", "{grpc_port}", models_arg, workers)
        version = peer_version("mlserver")
        entries += [Entry(f"MLServer {version} V2", mlserver, "/v2/models/mnist/infer", "v2"),
                    Entry(f"MLServer {version} gRPC", mlserver, "", "grpc")]
    if "ray" in args.peers:
        ray = peer("Ray Serve", "bench.peers_ray", args, "{port}", models_arg, workers, health="/-/healthz")
        entries.append(Entry(f"Ray Serve {peer_version('ray')} V1", ray, "/v1/models/mnist:predict", "v1"))
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


def grpc_infer(entry: Entry, pixels: np.ndarray) -> pb.ModelInferResponse:
    with grpc.insecure_channel(f"127.0.0.1:{entry.server.grpc_port}") as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(pixels), timeout=60)


def labels_of(entry: Entry, digits: np.ndarray) -> list[int]:
    if entry.kind == "grpc":
        answer = grpc_infer(entry, digits[:100])
        index = next(i for i, output in enumerate(answer.outputs) if output.name == "labels")
        return np.frombuffer(answer.raw_output_contents[index], "<i8").tolist()
    answer = requests.post(entry.server.url + entry.path, data=bodies(digits, entry.kind, 100),
                           headers={"Content-Type": "application/json"}, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    if entry.kind == "v1":
        return [p["label"] for p in body["predictions"]]
    return next(o["data"] for o in body["outputs"] if o["name"] == "labels")


def main() -> None:
    parser = argparse.ArgumentParser(description="mnist-serve against KServe, MLServer, Ray Serve, a bare Flask floor")
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
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS),
                        help="the peers to run beside mnist-serve and the floor")
    args = parser.parse_args()
    if wrk_binary() is None or h2load_binary() is None:
        raise SystemExit("bench.peers needs wrk and h2load: apt-get install -y wrk nghttp2-client")
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SCENARIOS = (("1 instance @ 4", 1, 4), ("1 instance @ 8", 1, 8), ("1 instance @ 64", 1, 64),
             ("1,000 JSON @ 4", 1000, 4))


def run(args: argparse.Namespace, tmp: Path) -> None:
    models = ensure_model(args.models_dir, MNIST_DIR, [1024], root=tmp / "models")
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
    grpc_body = tmp / "grpc_1.body"
    grpc_body.write_bytes(grpc_frame(infer_request(digits[:1]).SerializeToString()))
    try:
        for server in servers:
            server.start(tmp / "logs")
        reference = labels_of(entries[0], digits)
        for entry in entries:
            agree = sum(a == b for a, b in zip(labels_of(entry, digits), reference, strict=True))
            print(f"{entry.name}: {agree}/100 labels agree with {entries[0].name}")
            if agree != 100:
                raise SystemExit("the servers disagree: nothing to compare")
        # One good answer's frame per gRPC server: h2load's DATA bytes then tell how many calls were answered.
        frames = {e.name: len(grpc_frame(grpc_infer(e, digits[:1]).SerializeToString()))
                  for e in entries if e.kind == "grpc"}
        print_idle_cpu(servers)
        results: dict[tuple[str, str], list[tuple[WrkResult, list[float]]]] = {}
        load_before = os.getloadavg()
        for round_ in range(args.rounds):
            for title, n, connections in [s for s in SCENARIOS if s[0] in args.scenarios]:
                order = entries if round_ % 2 == 0 else entries[::-1]
                for entry in order:
                    if entry.kind != "v1" and n > 1:
                        continue  # the 1,000-instance case compares JSON V1 (binary V2: bench.http, gRPC: grpc_infer)
                    pids = entry.server.pids()
                    before, started = [_cpu(p) for p in pids], time.monotonic()
                    if entry.kind == "grpc":
                        result = grpc_run(entry, grpc_body, connections, args.seconds, frames[entry.name], tmp)
                    else:
                        result = run_wrk(entry.server.url + entry.path, connections, args.seconds,
                                         scripts[(entry.kind, n)])
                    wall = time.monotonic() - started
                    cores = [(_cpu(p) - b) / wall for p, b in zip(pids, before, strict=True)]
                    results.setdefault((entry.name, title), []).append((result, cores))
        report(entries, results, args, load_before)
    finally:
        for server in servers:
            server.stop()


def print_idle_cpu(servers: list[Server], seconds: float = 5.0) -> None:
    """What each server burns with no request at all (all of them run during every measurement, so
    an idle peer's background work, e.g. Ray's raylet and controller, is load on the others)."""
    before = {server.name: {pid: _cpu(pid) for pid in server.pids()} for server in servers}
    time.sleep(seconds)
    idle = {name: sum(_cpu(pid) - cpu for pid, cpu in pids.items()) / seconds for name, pids in before.items()}
    print("idle CPU (cores): " + ", ".join(f"{name} {cores:.3f}" for name, cores in idle.items()))


def grpc_run(entry: Entry, body: Path, concurrency: int, seconds: float, frame: int, tmp: Path) -> WrkResult:
    """``concurrency`` calls in flight under h2load: up to 8 connections, the rest as streams on them.
    A call without a full answer (a refusal carries no DATA) counts as an error, as wrk's non-2xx do."""
    connections = min(concurrency, 8)
    measured = run_h2load(entry.server.grpc_port, body, connections, concurrency // connections, seconds,
                          tmp / "h2load.log")
    unanswered = measured["done"] - round(answered_calls(measured, frame))
    return WrkResult(requests=int(measured["done"]), rps=measured["rps"], p50_ms=measured["p50"],
                     p99_ms=measured["p99"], errors=int(measured["failed"]) + unanswered,
                     wrk_cpu=measured["generator_cpu"])


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
    for ours, transport in (("mnist-serve V1", "REST"), ("mnist-serve gRPC", "gRPC")):
        for other in [e.name for e in entries if e.name != ours and (e.kind == "grpc") == (transport == "gRPC")]:
            ratios = [f"{title} {median[(ours, title)][0].rps / median[(other, title)][0].rps:.2f}"
                      for title in args.scenarios if (other, title) in median and (ours, title) in median]
            print(f"{ours} / {other}: " + ", ".join(ratios))
    if any(run[0].errors for runs in results.values() for run in runs):
        print("errors (non-2xx, socket errors, gRPC calls without an answer):",
              {f"{name} @ {title}": sum(run[0].errors for run in runs)
               for (name, title), runs in results.items() if any(run[0].errors for run in runs)})
    print("busiest processes' CPU (cores) at 4 connections, every round (both cores busy: two near 1):")
    for entry in entries:
        rounds = ["+".join(f"{c:.2f}" for c in sorted(cores, reverse=True)[:2])
                  for _, cores in results.get((entry.name, "1 instance @ 4"), [])]
        print(f"  {entry.name}: {'; '.join(rounds)}")
