"""The predictors that the API and the worker share: resolve a version, keep it loaded, swap on change.

Loaded versions are immutable, so they are cached by number. What moves is the mapping from
"production" (or another alias) to a number: every ``get`` call at most once per
``check_interval`` compares the registry's stat fingerprint and re-resolves when it changed.
A caller takes one ``Model`` reference per request and uses it to the end, so a swap between
requests can never mix two versions inside one response.

A server serves several model names side by side (as TF Serving and Triton do): ``ModelSet``
holds one ``Predictor`` per name, each with its own lock, cache and aliases, so one model's
broken version or reload never touches another. The names are the registry's (a model
published later is picked up within ``check_interval``) or a configured list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from core.model import Model
from core.registry import ModelNotFound, ModelRegistry, ModelUnloaded, NoModelPublished, RegistryError
from core.settings import Settings
from core.unloading import unloaded_mark, unloaded_message

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
        # Why nothing is served (the model is unloaded, in the registry for every process), else None.
        self.unloaded: str | None = None

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
            if unloaded_mark(self.registry, self.name) is not None:
                # Unloaded: drop every version (the memory goes back) and serve nothing until a load.
                self.unloaded, self.last_error, self._default_error = unloaded_message(self.name), None, None
                self._loaded, self._resolved = OrderedDict(), {}
                return
            self.unloaded = None
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

        Raises ``RegistryError`` subclasses (not found, nothing published, digest mismatch, unloaded).
        """
        with self._lock:
            self._refresh_if_changed()
            if self.unloaded is not None:
                raise ModelUnloaded(self.unloaded)
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

    def notice_changes(self) -> str | None:
        """Compare the registry's fingerprint now, whatever the interval (after this process changed
        it, e.g. unloaded the model); returns why nothing is served (``unloaded``), if so."""
        with self._lock:
            self._checked_at = -float("inf")
            self._refresh_if_changed()
            return self.unloaded

    def unloaded_reason(self) -> str | None:
        """Why the model serves nothing (unloaded), or None, as of the last check (at most
        ``check_interval`` old): for descriptions that must not load anything."""
        with self._lock:
            self._refresh_if_changed()
            return self.unloaded

    def held_version(self, version: int | None, alias: str | None) -> int | None:
        """The version a request for ``version`` or ``alias`` (neither: production) would use, when this
        process holds it in memory; None otherwise. Reads two dicts, no lock and no I/O."""
        if version is None:
            version = self._resolved.get(alias)
        return version if version in self._loaded else None

    def loaded_versions(self) -> set[int]:
        """The version numbers held in memory by this process."""
        with self._lock:
            return set(self._loaded)

    def loaded_version(self) -> int | None:
        """The production version currently held, without touching the registry."""
        return self._resolved.get(None)


class UnknownModel(ModelNotFound):
    """A model name this server does not serve (404); the message names the ones it does."""

    def __init__(self, name: str, served: list[str]) -> None:
        super().__init__(f"unknown model {name!r}: this server serves {', '.join(map(repr, served))}")
        self.name, self.served = name, served


class ModelSet:
    """Every served model name -> its own ``Predictor``, created on first use.

    ``default`` (``MODEL_NAME``) is always served: requests and jobs that name no model use it, so
    today's clients keep working. ``served`` (``SERVED_MODELS``) fixes the list; without it every
    model directory in the registry is served.
    """

    def __init__(self, registry: ModelRegistry, default: str, served: Sequence[str] = (),
                 check_interval: float = 0.5, max_loaded: int = 4) -> None:
        self.registry = registry
        self.default = default
        self.check_interval = check_interval
        self.max_loaded = max_loaded
        self.configured: tuple[str, ...] | None = tuple(dict.fromkeys([default, *served])) if served else None
        self._lock = threading.Lock()
        self._predictors: dict[str, Predictor] = {}
        self._names: tuple[str, ...] = (default,)
        self._listed_at = -float("inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelSet:
        """The deployment's models, as the API and the worker both configure them."""
        return cls(ModelRegistry(settings.models_dir), settings.model_name, settings.served_model_names,
                   check_interval=settings.reload_interval)

    def names(self, refresh: bool = False) -> list[str]:
        """The served names, sorted (a configured list keeps its order, the default first)."""
        if self.configured is not None:
            return list(self.configured)
        with self._lock:
            now = time.monotonic()
            if refresh or now - self._listed_at >= self.check_interval:
                self._listed_at = now
                # A model is a directory holding a version (not, say, a volume's lost+found); ':'
                # starts a V1 verb, so a directory so named could never be reached by URL.
                listed = (name for name in self.registry.model_names()
                          if ":" not in name and self.registry.versions(name))
                self._names = tuple(sorted({self.default, *listed}))
            return list(self._names)

    def serves(self, name: str) -> bool:
        """Whether ``name`` is served, by the listing ``names()`` keeps (re-listed when it is stale).

        The per-request check: a membership test on the kept tuple, no copy and, between
        re-listings, no lock.
        """
        if self.configured is not None:
            return name in self.configured
        if time.monotonic() - self._listed_at >= self.check_interval:
            self.names()
        return name in self._names

    def predictor(self, name: str | None = None) -> Predictor:
        """The predictor of ``name`` (default: ``default``); ``UnknownModel`` (404) if it is not served.

        An unknown name re-lists the registry once at once, so a model published a moment ago is
        found without waiting for the next check.
        """
        name = self.default if name is None else name
        if not self.serves(name) and name not in self.names(refresh=True):
            raise UnknownModel(name, self.names())
        predictor = self._predictors.get(name)  # one dict read (atomic): the lock only to create one
        if predictor is None:
            with self._lock:
                predictor = self._predictors.get(name)
                if predictor is None:
                    predictor = self._predictors[name] = Predictor(self.registry, name, self.check_interval,
                                                                   self.max_loaded)
        return predictor

    def get(self, version: int | None = None, alias: str | None = None, model: str | None = None) -> Model:
        """``Predictor.get`` of ``model`` (default: the default model): the positional order of
        ``Predictor.get`` plus the model, so ``get(*payload.model_target())`` reads the same."""
        return self.predictor(model).get(version, alias)

    def predictors(self) -> dict[str, Predictor]:
        """The predictors created so far (the models this process has been asked about)."""
        with self._lock:
            return dict(self._predictors)
