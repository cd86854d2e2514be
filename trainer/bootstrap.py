"""``python -m trainer.bootstrap``: train and publish the first model when the registry is empty.

Run once before the API starts (the one-shot ``trainer`` service of docker-compose, and
``deploy/run-local``). When the model already has a version it does nothing and exits 0, so it
is safe to run on every start. Otherwise the training data is, in this order:

1. the files in ``DATA_DIR`` (the repository's ``data/`` ships MNIST's 10,000 t10k digits): a
   Kaggle ``train.csv``, or MNIST IDX pairs (``<name>-images-idx3-ubyte[.gz]`` beside
   ``<name>-labels-idx1-ubyte[.gz]``, ``train-*`` preferred to ``t10k-*``) in ``DATA_DIR`` or
   one folder below it;
2. MNIST's training split already downloaded into ``DOWNLOAD_DIR`` by an earlier run;
3. MNIST downloaded from the mirrors in ``MNIST_URLS`` (an offline site lists its own mirror),
   each file verified against its known SHA-256 digest and refused when it does not match.

When none of these works it exits 2 with a message that says what to put where; a ``DATA_DIR``
that does not exist is said so, and nothing is created or downloaded into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.datasets import DatasetError, file_digest, load_dataset
from core.durable import exclusive_lock
from core.idx import labels_path_for
from core.registry import ModelRegistry
from core.settings import Settings, SettingsError
from trainer.cli import main as trainer_main

# Digests of the canonical MNIST training files (the .gz files every mirror serves). The t10k
# pair matches ../shared/data/mnist/SHA256SUMS; all four agree across independent sources.
MNIST_TRAIN_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
EXIT_NO_DATA = 2
_CHUNK = 1 << 16


class BootstrapSettings(BaseSettings):
    """Settings only the bootstrap reads (the shared ones come from ``core.settings.Settings``)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    mnist_urls: str = Field("", description="base URLs serving MNIST's train-*.gz files, separated by spaces or "
                                            "commas, tried in order; empty: the public mirrors; 'none': no download")
    download_dir: Path | None = Field(None, description="where downloaded MNIST goes (default DATA_DIR/downloads)")
    download_timeout: float = Field(60.0, gt=0, description="seconds before a silent mirror is given up")
    mnist_sha256: str = Field("", description="override the expected digests for a mirror serving other "
                                              "IDX files: 'train-images-idx3-ubyte.gz=<hex> "
                                              "train-labels-idx1-ubyte.gz=<hex>'")
    train_args: str = Field("", description="extra `python -m trainer train` flags after '--preset cnn', e.g. "
                                            "'--epochs 3', or '--preset default' for the MLP")

    def mirrors(self) -> list[str]:
        # Empty means "the defaults" so that compose can pass ${MNIST_URLS:-} through unchanged.
        urls = self.mnist_urls.replace(",", " ").split() or list(DEFAULT_MIRRORS)
        if [url.lower() for url in urls] == ["none"]:
            return []
        return [url if url.endswith("/") else url + "/" for url in urls]

    def digests(self) -> dict[str, str]:
        digests = dict(MNIST_TRAIN_FILES)
        for item in self.mnist_sha256.replace(",", " ").split():
            name, _, value = item.partition("=")
            if name not in digests or len(value) != 64:
                raise ValueError(f"MNIST_SHA256: {item!r} is not '<one of {', '.join(digests)}>=<64 hex digits>'")
            digests[name] = value.lower()
        return digests


def log(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def idx_images(folder: Path) -> list[Path]:
    """The ``*-images-idx3-ubyte[.gz]`` files in ``folder`` that have their labels file beside them."""
    found = []
    for path in sorted(folder.iterdir()):
        if "images-idx3-ubyte" in path.name and path.is_file():
            with contextlib.suppress(DatasetError):
                labels_path_for(path)
                found.append(path)
    return found


def find_user_data(data_dir: Path) -> Path | None:
    """A Kaggle train.csv or an MNIST IDX folder inside ``data_dir`` (or one level below)."""
    if not data_dir.is_dir():
        return None
    folders = [data_dir, *sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))]
    for folder in folders:
        if (folder / "train.csv").is_file():
            return folder / "train.csv"
    idx_folders = [(folder, idx_images(folder)) for folder in folders]
    idx_folders = [(folder, images) for folder, images in idx_folders if images]
    # MNIST's 60,000 train-* digits (the user's, or an earlier download) win over the 10,000
    # t10k-* ones the repository ships in data/.
    for folder, images in idx_folders:
        if any(path.name.startswith("train") for path in images):
            return folder
    return idx_folders[0][0] if idx_folders else None


def verified_download(directory: Path, digests: dict[str, str]) -> bool:
    """True when ``directory`` already holds both training files with the right digests."""
    return all((directory / name).is_file() and file_digest(directory / name) == digest
               for name, digest in digests.items())


def fetch(url: str, target: Path, expected_sha256: str, timeout: float) -> None:
    """Stream ``url`` to a temporary file beside ``target``; rename only when the digest matches."""
    tmp = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(_CHUNK):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != expected_sha256:
            raise ValueError(f"SHA-256 mismatch: got {digest.hexdigest()}, expected {expected_sha256}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def download_mnist(directory: Path, mirrors: list[str], digests: dict[str, str], timeout: float) -> list[str]:
    """Fetch each training file from the first mirror that serves it intact; returns the failures."""
    directory.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for name, digest in digests.items():
        target = directory / name
        if target.is_file() and file_digest(target) == digest:
            continue
        for base in mirrors:
            url = base + name
            log(f"downloading {url}")
            try:
                fetch(url, target, digest, timeout)
                break
            except (OSError, ValueError, urllib.error.URLError) as exc:
                failures.append(f"{url}: {exc}")
                log(f"  refused: {exc}")
    return failures


ACCEPTED_LAYOUTS = (
    "  - a Kaggle digit-recognizer train.csv (header label,pixel0,...,pixel783)\n"
    "  - MNIST IDX files: train-images-idx3-ubyte[.gz] with train-labels-idx1-ubyte[.gz] (60,000 digits),\n"
    "    or t10k-images-idx3-ubyte[.gz] with t10k-labels-idx1-ubyte[.gz] (10,000 digits; the repository's\n"
    "    data/ folder ships them), or any <name>-images-idx3-ubyte[.gz] beside its <name>-labels-idx1-ubyte[.gz]\n"
    "  either directly in the folder or in a folder one level below it"
)


def missing_folder_message(data_dir: Path) -> str:
    return (
        f"the data folder {data_dir.resolve()} (DATA_DIR) does not exist: check its spelling, or create it "
        "and put ONE of these into it:\n" + ACCEPTED_LAYOUTS + "\n"
        "Nothing was created or downloaded. Unset DATA_DIR to use the repository's data/ folder."
    )


def no_data_message(data_dir: Path, download_dir: Path, mirrors: list[str], failures: list[str]) -> str:
    tried = "\n".join(f"    {line}" for line in failures) or "    (downloading is disabled: MNIST_URLS=none)"
    return (
        f"no training data for the first model in the data folder {data_dir.resolve()} (DATA_DIR; with "
        "docker-compose: the host folder DATA_PATH, default ./data).\nPut ONE of these into it:\n"
        + ACCEPTED_LAYOUTS + "\n"
        f"or let the bootstrap download MNIST into {download_dir.resolve()}: set MNIST_URLS to mirrors "
        "(space-separated base URLs) serving train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz with "
        f"the canonical SHA-256 digests. Mirrors tried ({', '.join(mirrors) or 'none'}):\n{tried}"
    )


# The first model is the CNN preset: it beat the MLP on held-out digits and serves within 1.4x of its
# cost (docs/decisions/0021-cnn-default-model.md). TRAIN_ARGS come after, so they change or replace it.
FIRST_MODEL_FLAGS = ("--preset", "cnn")

# Seconds per 1,000 digits for that first training on two idle cores (measured: 10,000 MNIST digits,
# i.e. 8,000 trained on for 60 epochs, take about 80 s).
_SECONDS_PER_1000_ROWS = 8.0


def training_plan(data: Path, name: str, train_args: str) -> str:
    """What the first training is about to do and about how long it takes, for the log."""
    try:
        rows = len(load_dataset(data))
    except (DatasetError, OSError, ValueError):
        return f"training the first {name!r} model from {data}; each epoch is logged as it ends"
    if train_args.strip():
        how_long = f"with TRAIN_ARGS={train_args.strip()!r}"
    else:
        seconds = max(10, round(rows / 1000 * _SECONDS_PER_1000_ROWS, -1))
        how_long = (f"about {seconds:.0f} s on two idle cores" if seconds < 120
                    else f"about {seconds / 60:.0f} minutes on two idle cores")
    return (f"training the first {name!r} model on {rows:,} digits from {data} ({how_long}); the API "
            "starts once it is published; each epoch is logged as it ends")


def bootstrap_lock(models_dir: Path) -> contextlib.AbstractContextManager[None]:
    # Two launchers starting at once (e.g. a scaled-out compose run) must not both train.
    models_dir.mkdir(parents=True, exist_ok=True)
    return exclusive_lock(models_dir / ".bootstrap.lock")


def run(settings: Settings, boot: BootstrapSettings) -> int:
    registry = ModelRegistry(settings.models_dir)
    name = settings.model_name
    with bootstrap_lock(settings.models_dir):
        versions = registry.versions(name)
        if versions:
            log(f"model {name!r} already has version(s) {versions} in {settings.models_dir}: nothing to do")
            return 0
        if not settings.data_dir.is_dir():  # a typo must not become a folder full of downloads
            log("error: " + missing_folder_message(settings.data_dir))
            return EXIT_NO_DATA
        download_dir = boot.download_dir or settings.data_dir / "downloads"
        digests = boot.digests()
        data = find_user_data(settings.data_dir)
        if data is None and verified_download(download_dir, digests):
            data = download_dir
        if data is None:
            mirrors = boot.mirrors()
            failures = download_mnist(download_dir, mirrors, digests, boot.download_timeout) if mirrors else []
            if not verified_download(download_dir, digests):
                log("error: " + no_data_message(settings.data_dir, download_dir, mirrors, failures))
                return EXIT_NO_DATA
            data = download_dir
        log(training_plan(data, name, boot.train_args))
        argv = ["train", "--data", str(data), "--models-dir", str(settings.models_dir), "--model", name,
                *FIRST_MODEL_FLAGS, *shlex.split(boot.train_args), "--json"]
        return trainer_main(argv)


def main() -> int:
    try:
        settings = Settings()
    except SettingsError as exc:
        log(f"error: {exc}")
        return EXIT_NO_DATA
    try:
        boot = BootstrapSettings()
        boot.digests()
    except ValidationError as exc:
        log(f"error: {SettingsError.from_validation(exc)}")
        return EXIT_NO_DATA
    except ValueError as exc:  # MNIST_SHA256 that is not name=digest
        log(f"error: {exc}")
        return EXIT_NO_DATA
    return run(settings, boot)


if __name__ == "__main__":
    sys.exit(main())
