"""Serving cost of the default MLP against the CNN preset: a forward pass of 1,000 rows and of one, as served.

    .venv/bin/python -m bench.forward_time [--rows 1000 1] [--repeats 30]

Both architectures (``TrainConfig()``'s MLP and ``--preset cnn``'s conv net) are published
into a temporary registry and loaded through ``core.serving.Predictor``, the object the API's
workers call; each timing is ``Predictor.predict`` on ``--rows`` real MNIST digits as float32
pixels (input scaling, the network's row slices, softmax and argmax included; HTTP decoding
excluded: it is the same for both). Weights are as initialised: every operation is dense
numpy, so the time does not depend on their values. The two models alternate, repetition by
repetition, so a change of load on the machine touches both alike; the ratio of medians
(CNN / MLP, > 1 means the CNN is slower) is the figure, with the load average beside it. A pass of
fewer than 100 rows repeats 20 times as often. One BLAS thread, as the API's workers run
(deploy/gunicorn.conf.py), unless OPENBLAS_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")  # before numpy loads BLAS: the serving setting

import numpy as np  # noqa: E402

from core.datasets import load_dataset  # noqa: E402
from core.digits import N_CLASSES, N_PIXELS  # noqa: E402
from core.network import Network  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from core.serving import Predictor  # noqa: E402
from core.training_config import TrainConfig  # noqa: E402
from tests.support import MNIST_DIR  # noqa: E402


def networks() -> dict[str, tuple[Network, str]]:
    """The default MLP and the CNN preset, built as the trainer builds them."""
    mlp, cnn = TrainConfig(), TrainConfig.for_preset("cnn")
    return {
        "mlp": (Network.mlp([N_PIXELS, *mlp.hidden, N_CLASSES], seed=0),
                "784-" + "-".join(map(str, mlp.hidden)) + "-10 (default)"),
        "cnn": (Network.cnn(cnn.channels, 3, cnn.hidden, seed=0),
                f"conv {'-'.join(map(str, cnn.channels))}, dense {'-'.join(map(str, cnn.hidden))}-10 (--preset cnn)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 1])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    args = parser.parse_args()
    digits = np.asarray(load_dataset(args.mnist_dir).X, dtype=np.float32)
    print(f"{args.repeats} alternating repetitions ({20 * args.repeats} under 100 rows), "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, cpus {os.cpu_count()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="forward-time-") as tmp:
        registry = ModelRegistry(tmp)
        built = networks()
        predictors = {}
        for name, (network, _) in built.items():
            registry.publish_version(name, network, {})
            predictors[name] = Predictor(registry, name)
            predictors[name].predict(digits[:1000])  # load and warm up (first-touch of buffers)
        for rows in args.rows:
            pixels = digits[:rows]
            times: dict[str, list[float]] = {name: [] for name in predictors}
            for _ in range(args.repeats * (20 if rows < 100 else 1)):
                for name, predictor in predictors.items():
                    started = time.perf_counter()
                    predictor.predict(pixels)
                    times[name].append(time.perf_counter() - started)
            print(f"\n{rows} row(s) per pass")
            print(f"{'model':<6} {'median ms':>10} {'min ms':>8}  architecture")
            for name, samples in times.items():
                print(f"{name:<6} {1000 * statistics.median(samples):>10.3f} {1000 * min(samples):>8.3f}  "
                      f"{built[name][1]}")
            ratio = statistics.median(times["cnn"]) / statistics.median(times["mlp"])
            print(f"ratio cnn/mlp (medians): {ratio:.2f}  (> 1: the CNN serves {rows} row(s) more slowly)")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (both models loaded)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
