"""The model registry: versioned numpy weight files, manifests and aliases on a filesystem.

Layout (as in TensorFlow Serving and Triton, versions are positive integers)::

    <root>/<name>/<version>/weights.npz   float32 arrays, loaded with allow_pickle=False
    <root>/<name>/<version>/model.json    architecture, scaling, hyper-parameters, metrics, sha256
    <root>/<name>/aliases.json            {"production": 3, "staging": 4}

A version is written in full under a hidden temporary directory and then renamed to the next
free number: ``rename`` refuses a non-empty target, so two publishers racing for the same
number cannot both win and the loser simply tries the next one. Readers never see a partial
version, and a crash mid-write leaves only a hidden ``.tmp-*`` directory behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.digits import N_CLASSES, N_PIXELS
from core.durable import atomic_write, exclusive_lock, fsync_dir, write_file
from core.model import InputScaling, Model
from core.network import Network
from core.registry_errors import (
    UNCHECKED,
    AliasChanged,
    CorruptVersion,
    DigestMismatch,
    InvalidName,
    ModelNotFound,
    ModelUnloaded,
    NoModelPublished,
    PromotionRefused,
    RegistryError,
    Unchecked,
    VersionNotFound,
    check_alias,
    is_decimal,
)

# Callers import the errors and name rules from here, with the registry they describe.
__all__ = [
    "ALIASES_FILE",
    "MANIFEST_FILE",
    "PRODUCTION",
    "UNCHECKED",
    "UNLOADED_FILE",
    "WEIGHTS_FILE",
    "AliasChanged",
    "CorruptVersion",
    "DigestMismatch",
    "InvalidName",
    "ModelNotFound",
    "ModelRegistry",
    "ModelUnloaded",
    "NoModelPublished",
    "PromotionRefused",
    "RegistryError",
    "Unchecked",
    "VersionNotFound",
    "check_alias",
    "is_decimal",
]

WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "model.json"
ALIASES_FILE = "aliases.json"
UNLOADED_FILE = "unloaded.json"  # present while the model is unloaded (core.unloading)
PRODUCTION = "production"
_MAX_PUBLISH_ATTEMPTS = 1000


class ModelRegistry:
    """All models under one root directory; cheap to construct, safe across processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- paths and listing

    def model_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ModelNotFound(f"invalid model name {name!r}")
        return self.root / name

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / str(int(version))

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[int]:
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if is_decimal(p.name) and int(p.name) > 0)

    def fingerprint(self, name: str) -> tuple[int, ...]:
        """A cheap stat-based token that changes whenever a version, an alias or the unload mark changes.

        A new version is a rename inside the model directory (its mtime moves); aliases and the
        unload mark are replaced by rename (a new inode) or removed. Comparing tokens costs three
        ``stat`` calls.
        """
        token: list[int] = []
        directory = self.model_dir(name)
        for path in (directory, directory / ALIASES_FILE, directory / UNLOADED_FILE):
            try:
                st = path.stat()
                token += [st.st_mtime_ns, st.st_ino, st.st_size]
            except FileNotFoundError:
                token += [0, 0, 0]
        return tuple(token)

    # ---------------------------------------------------------------- aliases

    def aliases(self, name: str) -> dict[str, int]:
        path = self.model_dir(name) / ALIASES_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): int(v) for k, v in data.items()}

    def _aliases_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        # Alias updates are read-modify-write; an flock on a side file serialises them across
        # processes (and containers sharing the volume) without blocking readers.
        directory = self.model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(directory / ".aliases.lock")

    def _write_aliases(self, name: str, aliases: dict[str, int]) -> None:
        directory = self.model_dir(name)
        atomic_write(directory / ALIASES_FILE, json.dumps(dict(sorted(aliases.items())), indent=2).encode())

    def set_alias(self, name: str, alias: str, version: int,
                  expected: int | Unchecked | None = UNCHECKED) -> dict[str, int]:
        """Point ``alias`` at an existing ``version``; returns all aliases after the change.

        ``expected`` makes it a compare-and-set under the alias lock: the alias must still point at
        that version (``None``: must not exist yet), else ``AliasChanged`` and nothing is written.
        """
        check_alias(alias)
        with self._aliases_lock(name):
            if version not in self.versions(name):
                raise VersionNotFound(f"model {name!r} has no version {version}")
            aliases = self.aliases(name)
            if not isinstance(expected, Unchecked) and aliases.get(alias) != expected:
                raise AliasChanged(f"alias {alias!r} of model {name!r} now points at version {aliases.get(alias)}, "
                                   f"not {expected}: it changed meanwhile; not moving it to version {version}")
            aliases[alias] = int(version)
            self._write_aliases(name, aliases)
            return aliases

    def promote(self, name: str, alias: str, version: int,
                expected: int | Unchecked | None = UNCHECKED) -> dict[str, int]:
        """``set_alias`` after checking that ``version`` loads (digest, weights, architecture).

        Promoting a version that every server would refuse to load would report success while
        the old version keeps serving; this refuses it up front with the reason (409).
        """
        check_alias(alias)
        try:
            self.load(name, version=version)
        except DigestMismatch as exc:  # CorruptVersion included
            raise PromotionRefused(f"cannot point {alias!r} at version {version}: {exc}") from exc
        return self.set_alias(name, alias, version, expected)

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> int:
        """The version number that ``version`` / ``alias`` (default: production) designates."""
        versions = self.versions(name)
        if not versions:
            if not self.model_dir(name).is_dir():
                raise NoModelPublished(f"no model {name!r} has been published yet")
            raise NoModelPublished(f"model {name!r} has no published version yet")
        if version is not None:
            if version not in versions:
                raise VersionNotFound(f"model {name!r} has no version {version} "
                                      f"(available: {', '.join(map(str, versions))})")
            return version
        aliases = self.aliases(name)
        wanted = alias or PRODUCTION
        if wanted in aliases:
            return aliases[wanted]
        if alias is None:
            return versions[-1]  # no production alias at all: serve the newest version
        raise VersionNotFound(f"model {name!r} has no alias {alias!r} "
                              f"(aliases: {', '.join(sorted(aliases)) or 'none'})")

    # ---------------------------------------------------------------- publish and load

    def publish_version(self, name: str, network: Network, manifest: dict[str, Any],
                        scaling: InputScaling | None = None) -> int:
        """Write a new version atomically and return its number (1, 2, ... never reused).

        The first version of a model also becomes ``production`` when no alias exists yet.
        """
        directory = self.model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
        try:
            buffer = io.BytesIO()
            np.savez(buffer, **{k: np.asarray(v, dtype=np.float32) for k, v in network.arrays().items()})
            weights = buffer.getvalue()
            write_file(tmp / WEIGHTS_FILE, weights)
            full_manifest = {
                "name": name,
                # An MLP's manifest stays what it always was; a stack with other layers says so,
                # so a reader that predates them refuses it by its format, not by a crash.
                "format": "mnist-serve/numpy-mlp/1" if network.is_mlp else "mnist-serve/numpy-net/1",
                "architecture": network.architecture(),
                "input_scaling": (scaling or InputScaling()).to_json(),
                "weights_file": WEIGHTS_FILE,
                "weights_sha256": hashlib.sha256(weights).hexdigest(),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **manifest,
            }
            write_file(tmp / MANIFEST_FILE, json.dumps(full_manifest, indent=2, default=_json_default).encode())
            os.chmod(tmp, 0o755)
            version = self._rename_into_next_version(name, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(directory)
        with self._aliases_lock(name):
            if not self.aliases(name):
                # Under the lock, so two racing first publishers agree: the lowest number, i.e. the
                # version whose rename landed first, becomes production.
                self._write_aliases(name, {PRODUCTION: min(self.versions(name))})
        return version

    def _rename_into_next_version(self, name: str, tmp: Path) -> int:
        candidate = (max(self.versions(name), default=0)) + 1
        for _ in range(_MAX_PUBLISH_ATTEMPTS):
            try:
                os.rename(tmp, self.version_dir(name, candidate))
                return candidate
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                candidate += 1  # another publisher won this number; take the next
        raise RegistryError(f"could not find a free version number for {name!r}")

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        path = self.version_dir(name, version) / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise VersionNotFound(f"model {name!r} has no version {version}") from None
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            raise CorruptVersion(f"model {name!r} version {version}: {MANIFEST_FILE} is not JSON ({exc})") from exc
        if not isinstance(manifest, dict):
            raise CorruptVersion(f"model {name!r} version {version}: {MANIFEST_FILE} is not a JSON object")
        manifest["version"] = int(version)
        return manifest

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Model:
        """Load and verify a version; a weights digest that does not match refuses to load."""
        version = self.resolve(name, version, alias)
        manifest = self.manifest(name, version)
        weights_path = self.version_dir(name, version) / manifest.get("weights_file", WEIGHTS_FILE)
        raw = weights_path.read_bytes()
        actual = hashlib.sha256(raw).hexdigest()
        if actual != manifest.get("weights_sha256"):
            raise DigestMismatch(f"model {name!r} version {version}: {weights_path.name} has sha256 "
                                 f"{actual[:12]}..., manifest says {str(manifest.get('weights_sha256'))[:12]}...; "
                                 f"refusing to load it")
        try:
            # allow_pickle=False: a weights file holds plain arrays; an object array would run code.
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            network = Network.from_arrays(manifest["architecture"], arrays)
            scaling = InputScaling.from_json(manifest["input_scaling"])
            _check_io_shape(manifest["architecture"], network)
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
            raise CorruptVersion(f"model {name!r} version {version}: {weights_path.name} or {MANIFEST_FILE} "
                                 f"cannot be used ({type(exc).__name__}: {exc}); refusing to load it") from exc
        return Model(network, scaling, name, version, manifest)


def _check_io_shape(architecture: list[dict[str, Any]], network: Network) -> None:
    """A servable network maps 784 pixels to 10 digit scores; anything else fails every request."""
    if not network.is_mlp:
        # Conv shapes chain through the image size, which no single spec holds: run one blank image.
        shape = network.forward(np.zeros((1, N_PIXELS), np.float32)).shape
        if shape != (1, N_CLASSES):
            outputs = "x".join(map(str, shape[1:]))
            raise ValueError(f"architecture maps {N_PIXELS} -> {outputs}, "
                             f"a digit model needs {N_PIXELS} -> {N_CLASSES}")
        return
    dense = [layer for layer in architecture if layer.get("type") == "dense"]
    if not dense or int(dense[0]["n_inputs"]) != N_PIXELS or int(dense[-1]["n_neurons"]) != N_CLASSES:
        shape = f"{dense[0]['n_inputs']} -> {dense[-1]['n_neurons']}" if dense else "no dense layer"
        raise ValueError(f"architecture maps {shape}, a digit model needs {N_PIXELS} -> {N_CLASSES}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")
