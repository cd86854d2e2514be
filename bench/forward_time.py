"""Serving cost of the default MLP against the CNN preset: one forward pass of 1,000 rows, as served.

    .venv/bin/python -m bench.forward_time [--rows 1000] [--repeats 30]

Both architectures (``TrainConfig()``'s MLP and ``--preset cnn``'s conv net) are published
into a temporary registry and loaded through ``core.serving.Predictor``, the object the API's
workers call; each timing is ``Predictor.predict`` on ``--rows`` real MNIST digits as float32
pixels (input scaling, the network's row slices, softmax and argmax included; HTTP decoding
excluded: it is the same for both). Weights are as initialised: every operation is dense
numpy, so the time does not depend on their values. The two models alternate, repetition by
repetition, so a change of load on the machine touches both alike; the ratio of medians
(CNN / MLP, > 1 means the CNN is slower) is the figure, with the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.datasets import load_dataset
from core.digits import N_CLASSES, N_PIXELS
from core.network import Network
from core.registry import ModelRegistry
from core.serving import Predictor
from core.training_config import TrainConfig
from tests.support import MNIST_DIR


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
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    args = parser.parse_args()
    pixels = np.asarray(load_dataset(args.mnist_dir).X[:args.rows], dtype=np.float32)
    print(f"{len(pixels)} rows per pass, {args.repeats} alternating repetitions, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, cpus {os.cpu_count()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="forward-time-") as tmp:
        registry = ModelRegistry(tmp)
        built = networks()
        predictors = {}
        for name, (network, _) in built.items():
            registry.publish_version(name, network, {})
            predictors[name] = Predictor(registry, name)
            predictors[name].predict(pixels)  # load and warm up (first-touch of buffers)
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(args.repeats):
            for name, predictor in predictors.items():
                started = time.perf_counter()
                predictor.predict(pixels)
                times[name].append(time.perf_counter() - started)
    print(f"{'model':<6} {'median ms':>10} {'min ms':>8}  architecture")
    for name, samples in times.items():
        print(f"{name:<6} {1000 * statistics.median(samples):>10.2f} {1000 * min(samples):>8.2f}  {built[name][1]}")
    ratio = statistics.median(times["cnn"]) / statistics.median(times["mlp"])
    print(f"ratio cnn/mlp (medians): {ratio:.2f}  (> 1: the CNN serves {args.rows} rows more slowly)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (both models loaded)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
