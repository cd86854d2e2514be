"""Typed job hand-off: the payload the API queues, and the worker reading it back (core.jobs,
worker.payloads), including the keyword arguments the previous release queued."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from core.jobs import SCORE_FUNCTION, TRAIN_FUNCTION, ScoreJob, TrainJob
from core.training_config import TrainConfig
from worker.payloads import accept, payload_of
from worker.progress import JobFailed, JobReporter

JOB_ID = "0123456789abcdef0123456789abcdef"
# Exactly what the previous release's API passed as an RQ job's kwargs (an untyped dict).
PREVIOUS_SCORE = {"job_id": JOB_ID, "upload": "/srv/jobs/x/upload.csv", "version": 3, "alias": None,
                  "probabilities": True}
PREVIOUS_TRAIN = {"job_id": JOB_ID, "data": "/srv/data/digits.npz", "config": TrainConfig(epochs=2).model_dump(),
                  "promote": "never", "dev_fraction": 0.25}


def _reporter() -> JobReporter:
    return JobReporter(connection=None, job_id=JOB_ID)  # type: ignore[arg-type]  # outside RQ: only fail() is used


def _arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "job_id"}


def test_previous_release_kwargs_are_accepted() -> None:
    score = accept(ScoreJob, _reporter(), JOB_ID, _arguments(PREVIOUS_SCORE))
    assert score.model_target() == (3, None, None) and score.probabilities is True
    train = accept(TrainJob, _reporter(), JOB_ID, _arguments(PREVIOUS_TRAIN))
    assert train.config.epochs == 2 and train.promote == "never" and train.model_target() == (None, None, None)


def test_queued_kwargs_keep_the_previous_shape() -> None:
    """A job this release queues still runs on a worker of the previous release (rolling deploys)."""
    assert ScoreJob.model_validate(PREVIOUS_SCORE).model_dump(mode="json") == PREVIOUS_SCORE
    assert TrainJob.model_validate(PREVIOUS_TRAIN).model_dump(mode="json") == PREVIOUS_TRAIN


@pytest.mark.parametrize(("model", "arguments", "words"), [
    (TrainJob, {**_arguments(PREVIOUS_TRAIN), "promote": "sometimes"}, "promote: Input should be 'never'"),
    (TrainJob, {**_arguments(PREVIOUS_TRAIN), "config": {"epochs": 0}}, "config.epochs: Input should be greater"),
    (ScoreJob, {**_arguments(PREVIOUS_SCORE), "shards": 4}, "shards: Extra inputs are not permitted"),
    (ScoreJob, {"version": 1}, "upload: Field required"),
])
def test_arguments_that_do_not_fit_fail_the_job_clearly(model: type, arguments: dict[str, Any], words: str) -> None:
    with pytest.raises(JobFailed) as failed:
        accept(model, _reporter(), JOB_ID, arguments)
    assert str(failed.value).startswith("this worker cannot run the job as it was queued")
    assert words in str(failed.value)


def test_the_worker_preloads_the_model_the_payload_names() -> None:
    def target(function: str, kwargs: dict[str, Any]) -> tuple:
        return payload_of(SimpleNamespace(func_name=function, kwargs=kwargs)).model_target()

    assert target(SCORE_FUNCTION, PREVIOUS_SCORE) == (3, None, None)
    assert target(SCORE_FUNCTION, {**PREVIOUS_SCORE, "version": None, "alias": "staging"}) == (None, "staging", None)
    assert target(TRAIN_FUNCTION, PREVIOUS_TRAIN) == (None, None, None)
    assert payload_of(SimpleNamespace(func_name="somewhere.else", kwargs={})) is None
    assert payload_of(SimpleNamespace(func_name=SCORE_FUNCTION, kwargs={"job_id": JOB_ID})) is None


def test_a_named_model_travels_with_the_job() -> None:
    score = ScoreJob.model_validate({**PREVIOUS_SCORE, "model": "fashion"})
    assert score.model_dump(mode="json") == {**PREVIOUS_SCORE, "model": "fashion"}
    assert payload_of(SimpleNamespace(func_name=SCORE_FUNCTION, kwargs=score.model_dump(mode="json"))
                      ).model_target() == (3, None, "fashion")
    train = accept(TrainJob, _reporter(), JOB_ID, {**_arguments(PREVIOUS_TRAIN), "model": "fashion"})
    assert train.model_target() == (None, None, "fashion")


def test_a_dev_dataset_travels_with_a_training_job_and_only_then() -> None:
    train = accept(TrainJob, _reporter(), JOB_ID, {**_arguments(PREVIOUS_TRAIN), "dev_data": "/srv/data/t10k"})
    assert train.dev_data == "/srv/data/t10k"
    assert train.model_dump(mode="json") == {**PREVIOUS_TRAIN, "dev_data": "/srv/data/t10k"}
    assert "dev_data" not in TrainJob.model_validate(PREVIOUS_TRAIN).model_dump(mode="json")
    with pytest.raises(JobFailed, match="dev_data: String should have at least 1 character"):
        accept(TrainJob, _reporter(), JOB_ID, {**_arguments(PREVIOUS_TRAIN), "dev_data": ""})
