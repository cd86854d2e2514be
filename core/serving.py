"""The predictor that the API and the worker share: resolve a version, keep it loaded, swap on change.

Loaded versions are immutable, so they are cached by number. What moves is the mapping from
"production" (or another alias) to a number: every ``get`` call at most once per
``check_interval`` compares the registry's stat fingerprint and re-resolves when it changed.
A caller takes one ``Model`` reference per request and uses it to the end, so a swap between
requests can never mix two versions inside one response.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from core.model import Model
from core.registry import ModelRegistry, NoModelPublished, RegistryError
from core.settings import Settings

log = logging.getLogger(__name__)


class Predictor:
    """One model name's versions, loaded lazily and reloaded when the registry changes."""

    def __init__(self, registry: ModelRegistry, name: str, check_interval: float = 0.5,
                 max_loaded: int = 4) -> None:
        self.registry = registry
        self.name = name
        self.check_interval = check_interval
        self.max_loaded = max_loaded
        self._lock = threading.Lock()
        self._loaded: OrderedDict[int, Model] = OrderedDict()
        self._resolved: dict[str | None, int] = {}
        self._fingerprint: tuple[int, ...] | None = None
        self._versions: list[int] | None = None  # the registry's versions as of ``_fingerprint``
        self._checked_at = 0.0
        # What went wrong with the newest production alias (None when it serves as asked), and
        # per version the reason a load was refused: surfaced by /readyz and the models listing.
        self.last_error: str | None = None
        self.load_errors: dict[int, str] = {}
        self._default_error: RegistryError | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Predictor:
        """The deployment's model, as the API and the worker both configure it."""
        return cls(ModelRegistry(settings.models_dir), settings.model_name, check_interval=settings.reload_interval)

    def _refresh_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.check_interval:
            return
        self._checked_at = now
        fingerprint = self.registry.fingerprint(self.name)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._versions = None
            previous = self._resolved
            # A new dict, never an in-place change: ``loaded_version`` reads it without the lock.
            self._resolved = {}
            # Re-resolve the default at once so a broken new version is noticed (and refused)
            # here, while the previous production model keeps serving.
            if None in previous:
                self._resolve_default(fallback=previous[None])

    def _resolve_default(self, fallback: int | None) -> None:
        try:
            version = self.registry.resolve(self.name)
            self._load(version)
            self._resolved[None] = version
            self.last_error = self._default_error = None
        except RegistryError as exc:
            self.last_error, self._default_error = str(exc), exc
            # A broken new production (bad digest, alias to a vanished version) must not take
            # the service down: keep serving the version we had, and say so in the log.
            if fallback is not None and not isinstance(exc, NoModelPublished):
                log.error("%s; keeping version %s", exc, fallback)
                self._resolved[None] = fallback

    def _load(self, version: int) -> Model:
        model = self._loaded.get(version)
        if model is None:
            try:
                model = self.registry.load(self.name, version=version)
            except RegistryError as exc:
                self.load_errors = {**self.load_errors, version: str(exc)}
                raise
            self.load_errors = {v: e for v, e in self.load_errors.items() if v != version}
            self._loaded[version] = model
            while len(self._loaded) > self.max_loaded:
                oldest = next(iter(self._loaded))
                if oldest in self._resolved.values():
                    self._loaded.move_to_end(oldest)
                    break
                self._loaded.popitem(last=False)
            log.info("loaded model %s version %s", self.name, version)
        else:
            self._loaded.move_to_end(version)
        return model

    def get(self, version: int | None = None, alias: str | None = None) -> Model:
        """The model for an explicit version, an alias, or (neither) the production alias.

        Raises ``RegistryError`` subclasses (not found, nothing published, digest mismatch).
        """
        with self._lock:
            self._refresh_if_changed()
            if version is not None:
                # The version list is cached per fingerprint, so an explicit-version request
                # costs no directory listing; an unknown number is re-checked for a clear error.
                if self._versions is None:
                    self._versions = self.registry.versions(self.name)
                if version not in self._versions:
                    self.registry.resolve(self.name, version=version)  # raises a clear "no version N"
                return self._load(version)
            key = alias
            if key is None and None not in self._resolved:
                self._resolve_default(fallback=None)
                if None not in self._resolved and self._default_error is not None:
                    raise self._default_error
            if key not in self._resolved:
                self._resolved[key] = self.registry.resolve(self.name, alias=alias)
            return self._load(self._resolved[key])

    def predict(self, pixels: np.ndarray, version: int | None = None, alias: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, Model]:
        """(labels, probabilities, the model used) for raw pixels (n, 784) in 0..255."""
        model = self.get(version, alias)
        labels, probabilities = model.predict(pixels)
        return labels, probabilities, model

    def loaded_versions(self) -> set[int]:
        """The version numbers held in memory by this process."""
        with self._lock:
            return set(self._loaded)

    def loaded_version(self) -> int | None:
        """The production version currently held, without touching the registry."""
        return self._resolved.get(None)
