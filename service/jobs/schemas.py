"""Request parameters of the job endpoints, validated by pydantic (the same TrainConfig the CLI uses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.class_names import resolve_class_names
from core.digits import N_CLASSES
from core.jobs import MODEL_NAME_PATTERN, Promote
from core.training_config import TrainConfig
from core.validation import describe_validation
from service.service_error import ServiceError
from service.state import get_state
from service.targets import check_model_name


class ScoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, min_length=1, max_length=64,
                              description="score with this served model (default MODEL_NAME)")
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

    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN,
                              description="publish into this model (a new name starts one; default MODEL_NAME)")
    dataset: str | None = Field(None, description="a dataset in the server's DATA_DIR, instead of an upload")
    config: TrainConfig = Field(default_factory=TrainConfig)
    promote: Promote = "if_better"
    dev_fraction: float = Field(0.2, gt=0, lt=1, description="tail of the data held out as the dev split")
    # Takes precedence over dev_fraction (not a 422 for both: an OpenAPI document cannot state that
    # rule without a conditional, and the manifest and the job status say which dev rows were used).
    dev_dataset: str | None = Field(None, description="a labelled dataset in DATA_DIR as the dev split: training "
                                                      "then uses every row of the data and dev_fraction is not used")
    class_names: str | list[str] | None = Field(
        None, description="names of the classes in label order (the version's manifest carries them and V1 answers "
                          "\"class\" beside \"label\"), or a built-in list: 'fashion' or 'digits'; default: the "
                          "names of the model's production version, if it has any")

    @field_validator("class_names")
    @classmethod
    def _known_class_names(cls, value: str | list[str] | None) -> list[str] | None:
        return None if value is None else resolve_class_names(value, N_CLASSES)


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a request gives (a JSON null is not given); 422 for an empty one, which is
    never a default: ``?model=$MODEL`` with MODEL unset must not score with another model."""
    empty = sorted(name for name, value in values.items() if value == "")
    if empty:
        raise ServiceError(422, f"{', '.join(empty)}: empty; leave {'it' if len(empty) == 1 else 'them'} out "
                                f"for the default")
    return {name: value for name, value in values.items() if value is not None}


def parse_score(values: Mapping[str, Any]) -> ScoreParams:
    try:
        params = ScoreParams(**given(values))
    except ValidationError as exc:
        raise ServiceError(422, describe_validation(exc, whole="request")) from None
    if params.model is not None:
        check_model_name(params.model)  # 404 naming the served models, before the job is queued
    return params


def parse_train(values: Mapping[str, Any]) -> TrainParams:
    data = given(values)
    # Query string or form fields: config is a JSON object, class_names a name or a JSON list.
    for field, opening in (("config", ""), ("class_names", "[")):
        text = data.get(field)
        if isinstance(text, str) and text.lstrip().startswith(opening):
            try:
                data[field] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ServiceError(400, f"{field}: not valid JSON ({exc.msg} at character {exc.pos})") from None
    try:
        params = TrainParams(**data)
    except ValidationError as exc:
        raise ServiceError(422, describe_validation(exc, whole="request")) from None
    models = get_state().models
    if params.model is not None and models.configured is not None and params.model not in models.configured:
        # SERVED_MODELS fixes the list: a model trained outside it would never be served.
        raise ServiceError(404, f"model: {params.model!r} is not served here (SERVED_MODELS: "
                                f"{', '.join(map(repr, models.configured))}); train into one of those")
    return params
