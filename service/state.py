"""Per-app state built once by the factory: settings, the served models, the dataplane, Redis.

Blueprints reach it through ``get_state()``; nothing lives in module globals, so every test
can build its own app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from flask import current_app

from core.registry import ModelRegistry
from core.serving import ModelSet, Predictor
from core.settings import Settings
from service.batching import Batcher
from service.codecs.images import ImageBudget
from service.dataplane import DataPlane, Recorder

STATE_KEY = "mnist_serve"


@dataclass
class ServiceState:
    settings: Settings
    models: ModelSet
    dataplane: DataPlane
    redis: redis.Redis = field(repr=False)
    # Read from the settings once: a request needs it and the settings never change under an app.
    image_budget: ImageBudget = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.image_budget = ImageBudget(settings.max_images_per_request, settings.max_image_pixels,
                                        settings.max_image_decoded_bytes)

    @property
    def registry(self) -> ModelRegistry:
        return self.models.registry

    @property
    def predictor(self) -> Predictor:
        """The default model's predictor (``MODEL_NAME``), for code that knows one model only."""
        return self.models.predictor()

    @classmethod
    def from_settings(cls, settings: Settings, record: Recorder) -> ServiceState:
        """The state of one app; ``record`` is called once per forward pass (``DataPlane``)."""
        models = ModelSet.from_settings(settings)
        batcher = Batcher(settings.max_batch_size, settings.max_batch_delay_us / 1e6, settings.threads)
        # Short timeouts: when Redis is down, job endpoints must answer 503 quickly while
        # predictions (which never touch Redis) keep working.
        connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=5.0)
        return cls(settings, models, DataPlane(models, batcher, record), connection)


def get_state() -> ServiceState:
    return current_app.extensions[STATE_KEY]
