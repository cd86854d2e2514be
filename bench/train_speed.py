"""Training speed: our numpy trainer against PyTorch (CPU) and scikit-learn's MLPClassifier.

Same data (MNIST from ``$MNIST_DIR``: first 8,000 digits to train, last 2,000 as dev), same
architecture (784-hidden-10, ReLU, softmax cross-entropy), same optimizer (Adam, constant
learning rate), batch size and number of epochs, all measured in the same run. Each framework
runs in its own child process, one after the other, so its peak memory is its own.

    .venv/bin/python -m bench.train_speed [--epochs 10] [--hidden 1024] [--batch-size 128]
    .venv/bin/python -m bench.train_speed --arch cnn [--channels 16 32] [--hidden 128]

``--arch cnn`` compares the conv net of ``Network.cnn`` (per channel count: conv 3x3 'valid',
2x2 max-pool, ReLU; then the hidden dense layers) with the same layers in PyTorch (scikit-learn
has no conv layers, so it sits that one out).

What the figures mean:
- cpu s/epoch: process CPU time (all threads) per epoch, steadier than wall time on a busy machine.
- seconds/epoch: wall time of the training epochs only (data loading, imports and the final dev
  evaluation are excluded; per-epoch dev evaluation is off in all three).
- peak RSS: ``ru_maxrss`` of the child process (whole process: interpreter, framework libraries
  and data included); "train +MiB" is that peak minus the RSS measured just before training,
  i.e. roughly what the training itself added.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import MNIST_DIR, REPO_ROOT

FRAMEWORKS = ("ours", "pytorch", "sklearn")


def current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_data(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from core.datasets import load_dataset

    train_set, dev_set = load_dataset(mnist_dir).split_last(0.2)
    return train_set.X, train_set.y, dev_set.X, dev_set.y


def run_ours(args: argparse.Namespace, data: tuple[np.ndarray, ...]) -> dict[str, Any]:
    from core.datasets import Dataset
    from core.training_config import TrainConfig
    from trainer.training import EpochReport, train

    X, y, X_dev, y_dev = data
    config = TrainConfig(arch=args.arch, channels=args.channels, hidden=args.hidden, optimizer="adam", lr=args.lr,
                         lr_schedule="constant",
                         dropout=args.dropout, epochs=args.epochs, batch_size=args.batch_size, augment_shift=0,
                         early_stopping=0, seed=args.seed)
    seconds: list[float] = []
    cpu = [time.process_time()]

    def on_epoch(report: EpochReport) -> None:
        seconds.append(report.seconds)
        cpu.append(time.process_time())

    result = train(Dataset(X, y, "bench", "-"), None, config, on_epoch)
    predicted = result.model.predict(X_dev)[0]
    return {"epoch_seconds": seconds, "epoch_cpu": list(np.diff(cpu)),
            "dev_accuracy": float((predicted == y_dev).mean())}


def run_pytorch(args: argparse.Namespace, data: tuple[np.ndarray, ...]) -> dict[str, Any]:
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    X, y, X_dev, y_dev = data
    X_t = torch.from_numpy(X.astype(np.float32) / 255)
    y_t = torch.from_numpy(y.astype(np.int64))
    layers: list[nn.Module] = []
    sizes = [784, *args.hidden, 10]
    if args.arch == "cnn":
        # As Network.cnn: conv 3x3 valid, pool 2, ReLU per block (NCHW here, NHWC in ours: the
        # flatten order differs, the function class and the work do not).
        X_t = X_t.reshape(-1, 1, 28, 28)
        side, in_channels = 28, 1
        for out_channels in args.channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3), nn.MaxPool2d(2), nn.ReLU()]
            side, in_channels = (side - 2) // 2, out_channels
        layers.append(nn.Flatten())
        sizes[0] = side * side * in_channels
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if args.dropout:
                layers.append(nn.Dropout(args.dropout))
    model = nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    seconds, cpu = [], []
    for _ in range(args.epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(X_t))
        for start in range(0, len(X_t), args.batch_size):
            index = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X_t[index]), y_t[index])
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    model.eval()
    with torch.no_grad():
        dev = torch.from_numpy(X_dev.astype(np.float32) / 255)
        predicted = model(dev.reshape(-1, 1, 28, 28) if args.arch == "cnn" else dev).argmax(dim=1).numpy()
    return {"epoch_seconds": seconds, "epoch_cpu": cpu, "dev_accuracy": float((predicted == y_dev).mean()),
            "threads": torch.get_num_threads()}


def run_sklearn(args: argparse.Namespace, data: tuple[np.ndarray, ...]) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y, X_dev, y_dev = data
    # alpha=0: no L2 (ours and PyTorch have none here); tol/n_iter_no_change: never stop early.
    classifier = MLPClassifier(hidden_layer_sizes=tuple(args.hidden), activation="relu", solver="adam",
                               learning_rate_init=args.lr, batch_size=args.batch_size, max_iter=args.epochs,
                               alpha=0.0, shuffle=True, random_state=args.seed, tol=0.0,
                               n_iter_no_change=args.epochs + 1)
    X32 = X.astype(np.float32) / 255
    started, cpu_started = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(X32, y)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    predicted = classifier.predict(X_dev.astype(np.float32) / 255)
    # MLPClassifier exposes no per-epoch timing; its fit time spread evenly over its epochs.
    return {"epoch_seconds": [total / classifier.n_iter_] * classifier.n_iter_,
            "epoch_cpu": [total_cpu / classifier.n_iter_] * classifier.n_iter_,
            "dev_accuracy": float((predicted == y_dev).mean())}


def child(args: argparse.Namespace) -> None:
    """Run one framework and print one JSON line with its figures."""
    data = load_data(args.mnist_dir)
    runner = {"ours": run_ours, "pytorch": run_pytorch, "sklearn": run_sklearn}[args.child]
    if args.child == "pytorch":
        import torch  # imported before the baseline so the library itself is not counted as training
        del torch
    elif args.child == "sklearn":
        import sklearn.neural_network  # noqa: F401
    baseline = current_rss_mib()
    result = runner(args, data)
    result["rss_before_mib"] = baseline
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.train_speed", "--child", framework, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--dropout", str(args.dropout),
               "--seed", str(args.seed), "--mnist-dir", str(args.mnist_dir), "--hidden", *map(str, args.hidden),
               "--arch", args.arch, "--channels", *map(str, args.channels)]
    env = dict(os.environ)
    if args.threads:
        # Set before the child imports numpy or torch: OpenBLAS and OpenMP read these at load time.
        env.update(OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{framework} failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    default_mnist = MNIST_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS / OpenMP threads per framework (default: each library's own choice)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32], help="cnn only: per conv block")
    parser.add_argument("--hidden", type=int, nargs="+", help="default 1024 (mlp) or 128 (cnn)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.0, help="ours and PyTorch only (sklearn has none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist-dir", type=Path, default=default_mnist, help="default $MNIST_DIR or %(default)s")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.hidden = args.hidden or ([128] if args.arch == "cnn" else [1024])
    if args.arch == "cnn" and not args.child:
        if "sklearn" in args.frameworks and len(args.frameworks) == len(FRAMEWORKS):
            args.frameworks = ["ours", "pytorch"]  # the default list: leave out the one without conv layers
        elif "sklearn" in args.frameworks:
            parser.error("scikit-learn has no conv layers: --arch cnn runs ours and pytorch only")
    if args.child:
        child(args)
        return

    architecture = "-".join(map(str, [784, *args.hidden, 10]))
    if args.arch == "cnn":
        architecture = ("conv3x3-pool2-relu " + "-".join(map(str, args.channels)) + ", dense "
                        + "-".join(map(str, [*args.hidden, 10])))
    print(f"architecture {architecture}, Adam lr {args.lr:g} constant, batch {args.batch_size}, "
          f"{args.epochs} epochs, dropout {args.dropout:g} (ours/pytorch), 8000 train / 2000 dev digits")
    print(f"threads per framework: {args.threads or 'library default'}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cpus: {os.cpu_count()}")
    results = {name: run_child(name, args) for name in args.frameworks}
    print(f"{'framework':<10} {'s/epoch':>8} {'median':>8} {'cpu s/ep':>8} {'dev acc':>8} {'peak RSS MiB':>13} "
          f"{'train +MiB':>11}")
    for name, result in results.items():
        epoch = result["epoch_seconds"]
        print(f"{name:<10} {np.mean(epoch):>8.3f} {np.median(epoch):>8.3f} {np.mean(result['epoch_cpu']):>8.3f} "
              f"{result['dev_accuracy']:>8.4f} "
              f"{result['peak_rss_mib']:>13.0f} {result['peak_rss_mib'] - result['rss_before_mib']:>11.0f}")
    if "ours" in results:
        ours = np.mean(results["ours"]["epoch_seconds"])
        for name in ("pytorch", "sklearn"):
            if name in results:
                ratio = ours / np.mean(results[name]["epoch_seconds"])
                cpu_ratio = np.mean(results["ours"]["epoch_cpu"]) / np.mean(results[name]["epoch_cpu"])
                print(f"ratio ours/{name}: {ratio:.2f} wall s/epoch, {cpu_ratio:.2f} CPU s/epoch "
                      f"(< 1 means ours is faster)")
    if "pytorch" in results:
        print(f"pytorch intra-op threads: {results['pytorch']['threads']}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
