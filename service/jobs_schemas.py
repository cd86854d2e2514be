"""Request parameters of the job endpoints, validated by pydantic (the same TrainConfig the CLI uses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.training_config import TrainConfig
from service.errors import ApiError


class ScoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description="score with this version")
    alias: str | None = Field(None, min_length=1, max_length=64, description="or with this alias")
    probabilities: bool = Field(False, description="add p0..p9 columns to the result")

    @model_validator(mode="after")
    def _one_target(self) -> ScoreParams:
        if self.version is not None and self.alias is not None:
            raise ValueError("give either version or alias, not both")
        return self


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, description="a dataset in the server's DATA_DIR, instead of an upload")
    config: TrainConfig = Field(default_factory=TrainConfig)
    promote: Literal["never", "if_better", "always"] = "if_better"
    dev_fraction: float = Field(0.2, gt=0, lt=1, description="tail of the data held out as the dev split")


def describe(exc: ValidationError) -> str:
    """'config.hidden.0: Input should be ...; promote: ...' - the field path and what is wrong."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "request"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_score(values: Mapping[str, Any]) -> ScoreParams:
    try:
        return ScoreParams(**{k: v for k, v in values.items() if v not in (None, "")})
    except ValidationError as exc:
        raise ApiError(422, describe(exc)) from None


def parse_train(values: Mapping[str, Any]) -> TrainParams:
    data = {k: v for k, v in values.items() if v not in (None, "")}
    if isinstance(data.get("config"), str):  # query string or form field: a JSON object
        try:
            data["config"] = json.loads(data["config"])
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"config: not valid JSON ({exc.msg} at character {exc.pos})") from None
    try:
        return TrainParams(**data)
    except ValidationError as exc:
        raise ApiError(422, describe(exc)) from None
