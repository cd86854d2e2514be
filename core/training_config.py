"""Training hyper-parameters as one pydantic model, shared by the trainer CLI and the job API.

It lives in the kernel (not in ``trainer``) because the API validates a retraining request
with it without importing the trainer; the worker then hands the same object to the trainer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRESETS = ("default", "seed")


class TrainConfig(BaseModel):
    """Everything that decides what a training run produces (with the data and the seed)."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [1024], description="hidden layer widths, e.g. [256, 128]")
    optimizer: Literal["gd", "sgd", "momentum", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10, description="initial learning rate")
    lr_schedule: Literal["constant", "inverse", "cosine"] = "cosine"
    lr_decay: float = Field(0.0, ge=0, description="decay of the 'inverse' schedule: lr / (1 + decay * step)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, lt=1, description="L2 penalty on the weights")
    dropout: float = Field(0.3, ge=0, lt=1, description="inverted dropout after each hidden layer")
    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(128, ge=0, description="mini-batch size; 0 means full-batch gradient descent")
    augment_shift: int = Field(2, ge=0, le=4, description="random shifts of up to this many pixels")
    early_stopping: int = Field(10, ge=0, description="stop after this many epochs without a better dev loss (0: off)")
    init: Literal["he", "uniform"] = "he"
    seed: int = Field(0, ge=0)
    preset: Literal["default", "seed"] = "default"

    @model_validator(mode="after")
    def _check_hidden(self) -> TrainConfig:
        if not self.hidden or any(not 1 <= width <= 8192 for width in self.hidden):
            raise ValueError("hidden must list 1 or more layer widths between 1 and 8192")
        return self

    @classmethod
    def for_preset(cls, preset: str, **overrides: object) -> TrainConfig:
        """``seed`` is the classic tutorial network: 784-10-10, ReLU, softmax, full-batch gradient
        descent at lr 0.1 for 500 iterations, uniform(-0.5, 0.5) init, pixels / 255."""
        if preset == "seed":
            base: dict[str, object] = dict(hidden=[10], optimizer="gd", lr=0.1, lr_schedule="constant",
                                           dropout=0.0, epochs=500, batch_size=0, augment_shift=0,
                                           early_stopping=0, init="uniform", weight_decay=0.0, preset="seed")
        elif preset == "default":
            base = {}
        else:
            raise ValueError(f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)
