"""Drive gRPC load with ``h2load`` (nghttp2's HTTP/2 load generator, ``apt-get install nghttp2-client``).

h2load knows nothing of gRPC: it POSTs one length-prefixed message (``grpc_frame``) with
``content-type: application/grpc`` on every stream and counts HTTP statuses, which are 200 for a
refused call too (gRPC puts its status in the trailers). So ``run_h2load`` also returns the DATA
bytes received: a refused call answers with trailers only, no DATA, and a run whose data is
``done x`` the length of one good answer's frame had every call answered (``answered_calls``).
Like ``bench.wrk``'s, it samples the generator's own CPU share. ``infer_request`` is the call
every gRPC benchmark sends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from bench.wrk import cpu_seconds
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def h2load_binary() -> str | None:
    return shutil.which("h2load")


def infer_request(pixels: np.ndarray) -> pb.ModelInferRequest:
    """ModelInfer of ``pixels`` (n, 784) with raw FP32 contents, as Triton's clients send it."""
    request = pb.ModelInferRequest(model_name="mnist", raw_input_contents=[pixels.astype("<f4").tobytes()])
    request.inputs.add(name="pixels", datatype="FP32", shape=pixels.shape)
    return request


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: no compression (0), its length as 4 big-endian bytes, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def run_h2load(port: int, body: Path, connections: int, streams: int, seconds: float, log: Path,
               method: str = MODEL_INFER) -> dict[str, float]:
    """One h2load run of ``seconds``: calls/s, p50 and p99 ms (from its request log), HTTP failures,
    calls done, DATA bytes received, and its own CPU share."""
    command = ["h2load", "-D", str(max(1, round(seconds))), "-c", str(connections), "-m", str(streams), "-t", "1",
               "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
               "--log-file", str(log), f"http://127.0.0.1:{port}{method}"]
    log.unlink(missing_ok=True)  # h2load appends: an old run's lines would enter this run's percentiles
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() - started > seconds + 30:
            proc.kill()
            raise TimeoutError("h2load did not finish")
        time.sleep(0.05)
    wall = time.monotonic() - started
    own_cpu = cpu_seconds(proc.pid) / wall
    output = proc.communicate()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited with {proc.returncode}:\n{output}")
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                       output)
    traffic = re.search(r"traffic: .* \((\d+)\) data", output)
    if finished is None or counts is None or traffic is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    durations = np.array([int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip()]) / 1000
    return {"rps": float(finished[2]), "done": int(counts[1]), "p50": float(np.percentile(durations, 50)),
            "p99": float(np.percentile(durations, 99)), "failed": int(counts[3]) + int(counts[4]),
            "data_bytes": int(traffic[1]), "generator_cpu": own_cpu}


def answered_calls(measured: dict[str, float], answer_frame_bytes: int) -> float:
    """How many of a run's calls got a full answer: its DATA bytes over one good answer's frame."""
    return measured["data_bytes"] / answer_frame_bytes
