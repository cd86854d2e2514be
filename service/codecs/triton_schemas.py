"""Schemas of Triton's HTTP extensions (model repository, configuration, statistics): the request
bodies the views validate and the answers /openapi.json documents. The core protocol's schemas
are in ``service.codecs.schemas``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class IndexRequest(BaseModel):
    """``POST /v2/repository/index``: ``{}`` (or an empty body) for every model, ``{"ready": true}`` for
    the ready ones."""

    model_config = ConfigDict(extra="forbid")
    ready: StrictBool = False


class ModelActionRequest(BaseModel):
    """Triton's load and unload body, ``{"parameters": {...}}`` (optional). Unload takes
    ``unload_dependents`` (no model here has dependents); load takes no parameter: configuration and
    file overrides are refused, as models come from the registry as published."""

    model_config = ConfigDict(extra="forbid", strict=True)
    parameters: dict[str, Any] = {}


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str = Field(description="why UNAVAILABLE ('unloaded', or why the version cannot be loaded); else empty")


class RepositoryAction(BaseModel):
    name: str
    state: Literal["READY", "UNAVAILABLE"]
    changed: bool = Field(description="false when the model already was in that state (the call is idempotent)")


class TritonTensorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    data_type: str = Field(description="Triton's TYPE_FP32, TYPE_INT64, ...")
    dims: list[int] = Field(description="per row: the batch dimension is implied by max_batch_size")


class TritonModelConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="MAX_INSTANCES")
    input: list[TritonTensorConfig]
    output: list[TritonTensorConfig]


class TritonDuration(BaseModel):
    count: int
    ns: int


class TritonInferenceStats(BaseModel):
    success: TritonDuration
    fail: TritonDuration
    queue: TritonDuration = Field(description="not measured separately: zeros (as compute_*, cache_*)")
    compute_input: TritonDuration
    compute_infer: TritonDuration
    compute_output: TritonDuration
    cache_hit: TritonDuration
    cache_miss: TritonDuration


class TritonModelStat(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch of the newest success; 0: none")
    inference_count: int = Field(description="rows predicted")
    execution_count: int = Field(description="forward passes, counted one per successful request")
    inference_stats: TritonInferenceStats
    batch_stats: list[dict[str, Any]]


class TritonStats(BaseModel):
    model_stats: list[TritonModelStat]
