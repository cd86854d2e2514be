"""Pydantic request/response schemas: they validate request envelopes and generate /openapi.json.

Instances and tensor data are typed ``Any`` at run time (numpy checks the numbers, see
``service.instances``) but carry their full JSON Schema for the documentation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

_PIXELS = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}, "minItems": 784,
           "maxItems": 784, "description": "784 pixels, row-major, 0 = background, 255 = ink"}
_GRID = {"type": "array", "minItems": 28, "maxItems": 28,
         "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255},
                   "minItems": 28, "maxItems": 28}, "description": "28 rows of 28 pixels"}
_IMAGE = {"type": "object", "properties": {"b64": {"type": "string", "description": "base64 PNG or JPEG"}},
          "required": ["b64"], "additionalProperties": False,
          "description": "an image of any size; it is preprocessed the way MNIST was made"}
Instances = Annotated[list[Any], WithJsonSchema({"type": "array", "minItems": 1,
                                                 "items": {"oneOf": [_PIXELS, _GRID, _IMAGE]}})]


class PredictRequest(BaseModel):
    """TensorFlow Serving / KServe V1 ``predict`` request (row format)."""

    model_config = ConfigDict(extra="forbid")
    instances: Instances
    signature_name: str | None = Field(None, description="accepted for TF Serving clients; ignored")


class Prediction(BaseModel):
    label: int = Field(description="the most probable digit")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="softmax over digits 0..9")
    filename: str | None = Field(None, description="multipart uploads only: the uploaded file's name")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: int


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="an existing version number")


class AliasResponse(BaseModel):
    model: str
    alias: str
    version: int
    previous_version: int | None
    aliases: dict[str, int]


class VersionSummary(BaseModel):
    version: int
    created_at: str | None
    metrics: dict[str, Any]
    aliases: list[str]
    loaded: bool = Field(description="whether the answering worker holds it in memory")


class ModelVersionStatus(BaseModel):
    version: str
    state: Literal["AVAILABLE", "UNKNOWN"]
    status: dict[str, str]


class ModelInfo(BaseModel):
    name: str
    production_version: int | None = Field(description="the version the production alias designates")
    serving_version: int | None = Field(description="the production version the answering worker serves; differs "
                                                    "from production_version while that one cannot be loaded")
    error: str | None = Field(description="why the answering worker does not serve production_version, if so")
    aliases: dict[str, int]
    versions: list[VersionSummary]
    model_version_status: list[ModelVersionStatus] = Field(description="TensorFlow Serving style status")


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong and where (field, instance index, pixel)")


# ---------------------------------------------------------------- V2 Open Inference Protocol

TensorData = Annotated[Any, WithJsonSchema({"type": "array", "description": "row-major values, flat or nested"})]


class V2RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: TensorData = None


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: TensorData = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]
