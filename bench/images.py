"""Memory of image decoding under real gunicorn: 16 concurrent large uploads to one worker.

For each kind of image (small on the wire, large once decoded: a digit on flat paper), a fresh
gunicorn (1 gthread worker, ``THREADS`` threads, the project's ``deploy/gunicorn.conf.py``) is
warmed with a few small uploads, its worker's peak-RSS mark is reset (``/proc/<pid>/clear_refs``),
then ``--concurrent`` clients POST the image to ``:predict_image`` at once. Printed per kind: the
answers, the worker's RSS before, how much its peak (``VmHWM``) rose above that, and how much
RSS is still held ``--settle`` seconds after the last answer. Bounded: one burst per kind.

    .venv/bin/python -m bench.images [--concurrent 16] [--threads 4]
        [--env NAME=VALUE ...] [--repo CHECKOUT]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.http import ensure_model
from tests.api.pngs import digit_canvas, encode_png
from tests.support import MNIST_DIR, REPO_ROOT, GunicornServer, free_port

MIB = 1024 * 1024


def worst_case_images() -> dict[str, bytes]:
    """Large-when-decoded images, from the one in the issue to the largest accepted by default."""
    jpeg = io.BytesIO()
    Image.fromarray(digit_canvas(4096, 3, np.uint8)).save(jpeg, format="JPEG", quality=90)
    return {
        "4096x4096 RGBA 16-bit PNG (the issue's)": encode_png(digit_canvas(4096, 4, np.uint16)),
        "4096x4096 gray 16-bit PNG": encode_png(digit_canvas(4096, 1, np.uint16)),
        "2896x2896 RGBA 8-bit PNG": encode_png(digit_canvas(2896, 4, np.uint8)),
        "4096x4096 RGB JPEG": jpeg.getvalue(),
    }


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start or the last reset) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS mark to the current RSS


def burst(url: str, images: list[bytes]) -> Counter[str]:
    """One upload per image, all released together; returns a count of the answers ("status error")."""
    answers: Counter[str] = Counter()
    start = threading.Barrier(len(images))
    lock = threading.Lock()

    def post(image: bytes) -> None:
        start.wait()
        response = requests.post(url, files={"file": ("big.png", image, "application/octet-stream")}, timeout=120)
        answer = str(response.status_code)
        if response.status_code != 200:
            answer += f" {response.json().get('error', '')}"
        with lock:
            answers[answer] += 1

    threads = [threading.Thread(target=post, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def measure(models: Path, image: bytes, args: argparse.Namespace, small: bytes) -> dict[str, object]:
    logs = Path(tempfile.mkdtemp(prefix="bench-images-logs-"))
    env = {"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "LOG_LEVEL": "WARNING",
           "THREADS": str(args.threads), **dict(item.split("=", 1) for item in args.env)}
    server = GunicornServer(env, logs, workers=1, cwd=args.repo)
    server.start()
    try:
        url = f"{server.url}/v1/models/mnist:predict_image"
        pid = worker_pid(server.proc.pid)
        burst(url, [small] * args.threads)  # every thread has decoded once: imports and arenas are warm
        time.sleep(args.settle)
        before = memory_kib(pid)["VmRSS"]
        reset_peak(pid)
        started = time.perf_counter()
        answers = burst(url, [image] * args.concurrent)
        seconds = time.perf_counter() - started
        peak = memory_kib(pid)["VmHWM"]
        time.sleep(args.settle)
        after = memory_kib(pid)["VmRSS"]
    finally:
        server.stop()
    return {"answers": answers, "before": before / 1024, "peak_added": (peak - before) / 1024,
            "held_after": (after - before) / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="registry with an 'mnist' model (default: train one)")
    parser.add_argument("--mnist-dir", type=Path,
                        default=MNIST_DIR)
    parser.add_argument("--concurrent", type=int, default=16, help="simultaneous uploads per kind of image")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads of the one worker")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT,
                        help="checkout whose service gunicorn runs (e.g. another branch, for a before/after)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for gunicorn, e.g. MAX_IMAGE_DECODED_BYTES=134217728")
    args = parser.parse_args()

    models = ensure_model(args.models_dir, args.mnist_dir, [128])
    small = encode_png(digit_canvas(280, 4, np.uint8))
    print(f"gunicorn: 1 worker x {args.threads} threads serving {args.repo} {' '.join(args.env)}; "
          f"{args.concurrent} concurrent uploads per image; load {os.getloadavg()[0]:.2f}")
    print(f"{'image':42} {'bytes':>8} {'answers':34} {'RSS MiB':>8} {'peak +MiB':>10} {'held +MiB':>10} {'s':>6}")
    for name, image in worst_case_images().items():
        r = measure(models, image, args, small)
        answers = ", ".join(f"{n}x {a[:80]}" for a, n in sorted(r["answers"].items()))
        print(f"{name:42} {len(image):8,d} {answers[:34]:34} {r['before']:8.1f} {r['peak_added']:10.1f} "
              f"{r['held_after']:10.1f} {r['seconds']:6.1f}")
        if len(answers) > 34:
            print(f"{'':52}{answers}")


if __name__ == "__main__":
    main()
