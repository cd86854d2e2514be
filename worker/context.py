"""Per-process worker state: settings, registry, the shared ``ModelSet`` (a ``Predictor`` per model) and Redis.

Built once when ``python -m worker`` starts; RQ forks a work horse per job, and the horse
inherits this state, including any model the parent already loaded, so a job never loads
weights the worker process already holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from core.registry import ModelRegistry
from core.serving import ModelSet
from core.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    predictor: ModelSet  # every served model's Predictor; ``get(version, alias, model)``
    redis: redis.Redis = field(repr=False)

    @property
    def registry(self) -> ModelRegistry:
        return self.predictor.registry

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        predictor = ModelSet.from_settings(settings)
        return cls(settings, predictor, redis.Redis.from_url(settings.redis_url))


_context: WorkerContext | None = None


def set_context(context: WorkerContext) -> None:
    global _context
    _context = context


def get_context() -> WorkerContext:
    """The worker's context; built from the environment when a job runs outside ``python -m worker``."""
    global _context
    if _context is None:
        _context = WorkerContext.from_settings(Settings())
    return _context
