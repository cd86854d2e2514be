"""gRPC against REST on the same gunicorn: one digit at 8 and 64 concurrent calls, 1,000 digits in one call.

    .venv/bin/python -m bench.grpc_infer --hidden 1024 --seconds 5 --rounds 3

One gunicorn (2 workers x 4 threads, as deployed) serves both transports of the same process
(``GRPC_PORT``). Load comes from C generators, each one thread, whose own CPU share is printed:
``wrk`` posts V2 JSON infer requests; ``h2load`` (``apt-get install nghttp2-client``) posts the
gRPC ``ModelInfer`` call with raw contents as length-prefixed HTTP/2 frames, 8 connections with 1
or 8 streams each. h2load counts HTTP statuses, not gRPC's, so the request is first sent once
through a real stub, and the server's ``mnist_grpc_request_duration_seconds`` counts afterwards must
show every timed call as OK. Latency percentiles of h2load come from its per-request log.

For 1,000 digits: the median time of one call (raw contents through a grpcio stub, and V1 JSON
through ``requests``) over the in-process forward pass of the same model on one BLAS thread, as
served (``core.model.Model.predict_proba``), measured in this run; and grpcio's own share of such a
call, through a server in this process that answers without reading (the transport's floor).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")  # before numpy loads BLAS: the serving setting, for the in-process pass

import grpc  # noqa: E402
import orjson  # noqa: E402
import requests  # noqa: E402

from bench.h2load import grpc_frame, h2load_binary, infer_request, run_h2load  # noqa: E402
from bench.http import ensure_model, requests_for, server_pids  # noqa: E402
from bench.wrk import run_wrk, wrk_binary  # noqa: E402
from core.datasets import load_dataset  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb  # noqa: E402
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from tests.support import MNIST_DIR, GunicornServer, free_port  # noqa: E402

# (label, h2load connections, streams per connection): concurrent calls = connections x streams
GRPC_LOADS = ((8, 8, 1), (64, 8, 8))


def grpc_calls_by_code(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    found: dict[str, float] = {}
    pattern = r'^mnist_grpc_request_duration_seconds_count\{code="(\w+)",method="ModelInfer",model="mnist"\} (\S+)'
    for code, value in re.findall(pattern, text, flags=re.M):
        found[code] = found.get(code, 0.0) + float(value)
    return found


def median_seconds(call: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024], help="hidden widths of the model trained")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds in alternating order; the median is kept")
    parser.add_argument("--repeats", type=int, default=30, help="1,000-digit calls timed per transport")
    args = parser.parse_args()
    if wrk_binary() is None or h2load_binary() is None:
        print("bench.grpc_infer needs wrk and h2load: apt-get install -y wrk nghttp2-client", file=sys.stderr)
        raise SystemExit(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    models = ensure_model(None, args.mnist_dir, args.hidden, root=tmp / "models")
    digits = load_dataset(args.mnist_dir).X[:1000]
    rest = requests_for(digits, tmp)
    one_body = tmp / "grpc_one.bin"
    one_body.write_bytes(grpc_frame(infer_request(digits[:1]).SerializeToString()))
    port = free_port()
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                             "LOG_LEVEL": "WARNING", "THREADS": "4", "GRPC_PORT": str(port),
                             "GRPC_HOST": "127.0.0.1"}, tmp / "logs", workers=2)
    server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 1 << 26)])
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(8):  # both workers load the model before anything is timed
            stub.ModelInfer(infer_request(digits[:1]), timeout=30)
            requests.post(server.url + rest["v2_one"].path, data=rest["v2_one"].body, headers=rest["v2_one"].headers,
                          timeout=30).raise_for_status()
        ok_before = grpc_calls_by_code(server.url)
        load_before = os.getloadavg()[0]
        rows: dict[tuple[str, int], list[dict[str, float]]] = {}
        plan = [("REST V2 infer, JSON (wrk)", concurrency) for concurrency, _, _ in GRPC_LOADS]
        plan += [("gRPC ModelInfer, raw (h2load)", concurrency) for concurrency, _, _ in GRPC_LOADS]
        for round_ in range(args.rounds):
            for name, concurrency in plan if round_ % 2 == 0 else plan[::-1]:
                if name.startswith("REST"):
                    wrk = run_wrk(server.url + rest["v2_one"].path, concurrency, args.seconds, rest["v2_one"].script)
                    measured = {"rps": wrk.rps, "p50": wrk.p50_ms, "p99": wrk.p99_ms, "failed": wrk.errors,
                                "generator_cpu": wrk.wrk_cpu}
                else:
                    _, connections, streams = next(load for load in GRPC_LOADS if load[0] == concurrency)
                    measured = run_h2load(port, one_body, connections, streams, args.seconds, tmp / "h2load.log")
                rows.setdefault((name, concurrency), []).append(measured)
        calls = grpc_calls_by_code(server.url)
        not_ok = {code: n - ok_before.get(code, 0.0) for code, n in calls.items() if code != "OK"}
        sent = sum(m.get("done", 0) for measured in rows.values() for m in measured)
        answered = calls.get("OK", 0.0) - ok_before.get("OK", 0.0)
        if any(not_ok.values()) or answered < sent:
            raise SystemExit(f"gRPC calls under load: {sent} done by h2load, {answered:.0f} answered OK, {not_ok}")

        # 1,000 digits in one call, against the in-process forward pass of the same version.
        model = ModelRegistry(models).load("mnist")
        big_grpc = infer_request(digits)
        v1_body = orjson.dumps({"instances": digits.astype(int).tolist()})
        with requests.Session() as session:
            def v1() -> None:
                session.post(server.url + "/v1/models/mnist:predict", data=v1_body,
                             headers={"Content-Type": "application/json"}, timeout=60).raise_for_status()

            v1()
            stub.ModelInfer(big_grpc, timeout=60)
            forward = median_seconds(lambda: model.predict_proba(digits), args.repeats)
            over_grpc = median_seconds(lambda: stub.ModelInfer(big_grpc, timeout=60), args.repeats)
            over_v1 = median_seconds(v1, args.repeats)
        channel.close()
        pids = server_pids(server.proc.pid)
    finally:
        server.stop()
    floor = transport_floor(infer_request(digits), args.repeats)
    report(args, rows, load_before, forward, over_grpc, over_v1, len(pids) - 1)
    print(f"grpcio's own cost of that call (an in-process server answering a fixed 48 kB reply, no forward "
          f"pass): {floor * 1000:.1f} ms, so forward + transport alone is {(forward + floor) / forward:.2f}x")


class _FixedReply(pb_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        return pb.ModelInferResponse(model_name="mnist", raw_output_contents=[bytes(40_000), bytes(8_000)])


def transport_floor(request: pb.ModelInferRequest, repeats: int) -> float:
    """Median seconds of ``request`` through grpcio alone: a server in this process that reads
    nothing and answers what 1,000 rows' outputs weigh. What no server on grpcio can go below."""
    limits = [("grpc.max_receive_message_length", 1 << 26), ("grpc.max_send_message_length", 1 << 26)]
    server = grpc.server(futures.ThreadPoolExecutor(4), options=limits)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_FixedReply(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=limits) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(5):
                stub.ModelInfer(request, timeout=60)
            return median_seconds(lambda: stub.ModelInfer(request, timeout=60), repeats)
    finally:
        server.stop(0)


def report(args: argparse.Namespace, rows: dict[tuple[str, int], list[dict[str, float]]], load_before: float,
           forward: float, over_grpc: float, over_v1: float, workers: int) -> None:
    print(f"mnist-serve, {workers} gunicorn workers x 4 threads, hidden {args.hidden}, {args.rounds} rounds of "
          f"{args.seconds:g} s (median round), load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"{'scenario':34} {'calls':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} {'generator CPU':>13}")
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for (name, concurrency), measured in rows.items():
        measured.sort(key=lambda m: m["rps"])
        middle = medians[name, concurrency] = measured[len(measured) // 2]
        print(f"{name:34} {concurrency:>5} {middle['rps']:>8.0f} {middle['p50']:>8.2f} {middle['p99']:>8.2f} "
              f"{middle['failed']:>6.0f} {middle['generator_cpu']:>12.0%}")
    for concurrency, _, _ in GRPC_LOADS:
        grpc_row = medians["gRPC ModelInfer, raw (h2load)", concurrency]
        rest_row = medians["REST V2 infer, JSON (wrk)", concurrency]
        print(f"gRPC / REST V2 at {concurrency} concurrent calls: {grpc_row['rps'] / rest_row['rps']:.2f}x req/s")
    print(f"1,000 digits in one call: forward pass {forward * 1000:.1f} ms in process; gRPC raw "
          f"{over_grpc * 1000:.1f} ms ({over_grpc / forward:.2f}x), V1 JSON {over_v1 * 1000:.1f} ms "
          f"({over_v1 / forward:.2f}x)")


if __name__ == "__main__":
    main()
