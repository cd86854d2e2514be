"""The one formatter of pydantic validation errors (core.validation) that the API, the job
parameters and the trainer CLI share."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from core.training_config import TrainConfig
from core.validation import describe_validation


class _Pair(BaseModel):
    a: int
    b: int

    @model_validator(mode="after")
    def _ordered(self) -> _Pair:
        if self.a > self.b:
            raise ValueError("a must not exceed b")
        return self


def _error(model: type[BaseModel], data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value


def test_every_problem_with_its_field_path() -> None:
    exc = _error(TrainConfig, {"hidden": ["wide"], "dropout": 2})
    assert describe_validation(exc) == ("hidden.0: Input should be a valid integer, unable to parse string as an "
                                        "integer; dropout: Input should be less than 1")


def test_prefix_limit_and_whole_object() -> None:
    exc = _error(TrainConfig, {"hidden": ["wide"], "dropout": 2})
    assert describe_validation(exc, prefix="config", limit=1).startswith("config.hidden.0: Input should be")
    assert ";" not in describe_validation(exc, limit=1)
    unordered = _error(_Pair, {"a": 2, "b": 1})
    assert describe_validation(unordered, whole="pair") == "pair: Value error, a must not exceed b"
    assert describe_validation(unordered).startswith("request body: ")
