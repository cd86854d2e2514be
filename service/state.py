"""Per-app state built once by the factory: settings, registry, predictor and the Redis link.

Blueprints reach it through ``get_state()``; nothing lives in module globals, so every test
can build its own app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from flask import current_app

from core.registry import ModelRegistry
from core.serving import Predictor
from core.settings import Settings

STATE_KEY = "mnist_serve"


@dataclass
class ServiceState:
    settings: Settings
    predictor: Predictor
    redis: redis.Redis = field(repr=False)

    @property
    def registry(self) -> ModelRegistry:
        return self.predictor.registry

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceState:
        predictor = Predictor.from_settings(settings)
        # Short timeouts: when Redis is down, job endpoints must answer 503 quickly while
        # predictions (which never touch Redis) keep working.
        connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=5.0)
        return cls(settings, predictor, connection)


def get_state() -> ServiceState:
    return current_app.extensions[STATE_KEY]
