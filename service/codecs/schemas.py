"""Pydantic request/response schemas: they validate request envelopes and generate /openapi.json.

Instances and tensor data are typed ``Any`` at run time (numpy checks the numbers, see
``service.codecs.instances``) but carry their full JSON Schema for the documentation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

_PIXELS = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}, "minItems": 784,
           "maxItems": 784, "description": "784 pixels, row-major, 0 = background, 255 = ink"}
_GRID = {"type": "array", "minItems": 28, "maxItems": 28,
         "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255},
                   "minItems": 28, "maxItems": 28}, "description": "28 rows of 28 pixels"}
_IMAGE = {"type": "object", "properties": {"b64": {"type": "string", "minLength": 1, "format": "byte",
                                                   "contentEncoding": "base64", "contentMediaType": "image/png",
                                                   "description": "base64 PNG or JPEG (standard alphabet)"}},
          "required": ["b64"], "additionalProperties": False,
          "description": "an image of any size; it is preprocessed the way MNIST was made"}
_BATCH = {"type": "array", "minItems": 1, "items": {"oneOf": [_PIXELS, _GRID, _IMAGE]}}
Instances = Annotated[list[Any], WithJsonSchema(_BATCH)]
# Either format may be left out, never sent as null: the document says so (no null, no default).
OptionalInstances = Annotated[list[Any] | None, WithJsonSchema({**_BATCH, "description": "row format: one entry "
                                                                                        "per instance"})]
# The name of the one input in TF Serving's metadata and the named columnar form (V2 says "pixels" too).
INPUT_NAME = "pixels"
# TF Serving's columnar form for one input: the batch itself, or {"<input name>": batch}.
Inputs = Annotated[list[Any] | dict[str, Any] | None, WithJsonSchema({
    "description": f"columnar format (TF Serving): the batch, or {{\"{INPUT_NAME}\": batch}}",
    "oneOf": [{**_BATCH, "description": "the batch: one entry per instance, as in 'instances'"},
              {"type": "object", "properties": {INPUT_NAME: _BATCH}, "required": [INPUT_NAME],
               "additionalProperties": False, "description": "the batch under the input's name"}]})]


def _integral(value: Any) -> Any:
    """3.0 is the integer 3 in JSON Schema (and to clients that write every number as a float)."""
    return int(value) if type(value) is float and value.is_integer() else value


# An integer for strict models: no "3" and no true, but 3.0 is 3.
JsonInt = Annotated[int, BeforeValidator(_integral)]


class PredictRequest(BaseModel):
    """TensorFlow Serving / KServe V1 ``predict`` request: the row format (``instances``, answered with
    ``predictions``) or TF Serving's columnar format (``inputs``, answered with ``outputs``), exactly one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}]})
    instances: OptionalInstances = None
    inputs: Inputs = None
    signature_name: str | None = Field(None, description="accepted for TF Serving clients; ignored")

    @model_validator(mode="after")
    def _one_format(self) -> PredictRequest:
        if (self.instances is None) == (self.inputs is None):
            got = "both" if self.instances is not None else "neither"
            raise PydanticCustomError("one_format", "send exactly one of 'instances' (row format) or 'inputs' "
                                                    "(columnar format), got {got}", {"got": got})
        return self


class Prediction(BaseModel):
    label: int = Field(description="the most probable digit")
    class_: str | None = Field(None, alias="class", description="the label's name, when the model's manifest "
                                                                "names its classes (e.g. 'T-shirt/top')")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="softmax over digits 0..9")
    filename: str | None = Field(None, description="multipart uploads only: the uploaded file's name")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: int


class ColumnarOutputs(BaseModel):
    label: list[int] = Field(description="the most probable class per instance")
    probabilities: list[list[float]] = Field(description="softmax over the classes, one row per instance")
    class_: list[str] | None = Field(None, alias="class", description="the labels' names, when the model's "
                                                                      "manifest names its classes")


class ColumnarPredictResponse(BaseModel):
    """The answer to a columnar (``inputs``) request, as TF Serving gives it: one list per output."""

    outputs: ColumnarOutputs
    model_version: int


class ExplainRequest(BaseModel):
    """``:explain`` takes the ``:predict`` row format (at most MAX_EXPLAIN_INSTANCES instances)."""

    model_config = ConfigDict(extra="forbid")
    instances: Instances
    signature_name: str | None = Field(None, description="accepted for TF Serving clients; ignored")


_GRID_OF = {"type": "array", "minItems": 28, "maxItems": 28}


class Explanation(BaseModel):
    label: int = Field(description="the predicted digit, the class the attributions explain")
    class_: str | None = Field(None, alias="class", description="the label's name, when the manifest names classes")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="softmax over digits 0..9")
    pixels: Annotated[list[list[int]], WithJsonSchema({
        **_GRID_OF, "items": {**_GRID_OF, "items": {"type": "integer", "minimum": 0, "maximum": 255}},
        "description": "the 28x28 image the model saw (images after preprocessing), rounded to integers"})]
    attributions: Annotated[list[list[float]], WithJsonSchema({
        **_GRID_OF, "items": {**_GRID_OF, "items": {"type": "number"}},
        "description": "28x28 gradient x input: each pixel's value times the gradient of the label's "
                       "logit (pre-softmax) with respect to that pixel in 0..255 units"})]


class ExplainResponse(BaseModel):
    model_name: str
    model_version: int = Field(description="an integer, as in every V1 answer (V2 answers say it as a string)")
    method: Literal["gradient_x_input"]
    explanations: list[Explanation]


class TFServingModelSpec(BaseModel):
    name: str
    signature_name: str
    version: str = Field(description="a string, as TF Serving prints its int64 wrapper")


class TFServingModelMetadata(BaseModel):
    """TF Serving's ``GetModelMetadata`` answer: ``metadata.signature_def.signature_def.serving_default``
    holds ``inputs``, ``outputs`` (name -> dtype, tensor_shape, name) and ``method_name``."""

    model_spec: TFServingModelSpec
    metadata: dict[str, Any]


class AliasUpdate(BaseModel):
    # strict: "3", 3.5 or true are not version numbers (lax pydantic would take "3" and true)
    model_config = ConfigDict(extra="forbid", strict=True)
    version: JsonInt = Field(ge=1, description="an existing version number")


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
    """TF Serving's status of one version, in the answering worker process."""

    version: str = Field(description="a string, as TF Serving prints it")
    state: Literal["START", "AVAILABLE", "END", "UNKNOWN"] = Field(
        description="AVAILABLE: loaded in this process; START: on disk, loaded on first request; END: the "
                    "model is unloaded; UNKNOWN: this process could not load it (status says why)")
    status: dict[str, str] = Field(description="error_code (OK, FAILED_PRECONDITION) and error_message")


class VersionManifest(BaseModel):
    """A version's manifest (model.json) as stored, plus its status."""

    model_config = ConfigDict(extra="allow")
    version: int
    model_version_status: list[ModelVersionStatus] = Field(min_length=1, max_length=1)


class ModelInfo(BaseModel):
    name: str
    production_version: int | None = Field(description="the version the production alias designates")
    serving_version: int | None = Field(description="the production version the answering worker serves; differs "
                                                    "from production_version while that one cannot be loaded")
    error: str | None = Field(description="why the answering worker does not serve production_version, if so")
    aliases: dict[str, int]
    versions: list[VersionSummary]
    model_version_status: list[ModelVersionStatus] = Field(description="TensorFlow Serving style status")


class ModelListEntry(BaseModel):
    name: str
    production_version: int | None
    aliases: dict[str, int]
    versions: list[int]
    class_names: list[str] | None = Field(description="the production version's class names, if its manifest "
                                                      "has them")


class ModelList(BaseModel):
    default: str = Field(description="the model that requests and jobs naming none use (MODEL_NAME)")
    models: list[ModelListEntry]


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong and where (field, instance index, pixel)")


# ---------------------------------------------------------------- V2 Open Inference Protocol

TensorData = Annotated[Any, WithJsonSchema({"type": "array", "description": "row-major values, flat or nested"})]


_V2_ROWS = {"type": "integer", "minimum": 1, "description": "n, the number of images (at most MAX_INSTANCES)"}
_V2_VALUES = {"type": "number", "minimum": 0, "maximum": 255}
_V2_DATA = {"description": "n x 784 values, flat (row-major) or as n rows of 784; integers for UINT8",
            "anyOf": [{"type": "array", "minItems": 784, "items": _V2_VALUES},
                      {"type": "array", "minItems": 1,
                       "items": {"type": "array", "minItems": 784, "maxItems": 784, "items": _V2_VALUES}}]}
V2Shape = Annotated[list[JsonInt], WithJsonSchema({
    "type": "array", "prefixItems": [_V2_ROWS, {"const": 784}], "minItems": 2, "maxItems": 2,
    "description": "[n, 784]"})]


class V2RequestInput(BaseModel):
    """The one input tensor ``pixels`` ``[n, 784]``: JSON ``data`` or, with the binary tensor
    extension, ``parameters.binary_data_size`` bytes after the JSON header."""

    # JSON requests carry ``data``; the binary extension's header (see /openapi.json's
    # application/octet-stream body) carries parameters.binary_data_size instead.
    model_config = ConfigDict(strict=True, json_schema_extra={"required": ["name", "shape", "datatype", "data"]})
    name: Annotated[str, WithJsonSchema({"const": "pixels", "type": "string"})]
    shape: V2Shape
    datatype: Annotated[str, WithJsonSchema({"enum": ["FP32", "UINT8"], "type": "string"})]
    parameters: Annotated[dict[str, Any] | None, WithJsonSchema({
        "type": ["object", "null"], "not": {"type": "object", "required": ["binary_data_size"]},
        "description": "binary_data_size belongs to the binary tensor extension only"})] = None
    data: Annotated[Any, WithJsonSchema(_V2_DATA)] = None


class V2RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True)
    name: Annotated[str, WithJsonSchema({"enum": ["probabilities", "labels"], "type": "string"})]
    parameters: Annotated[dict[str, Any] | None, WithJsonSchema({
        "type": ["object", "null"], "properties": {"binary_data": {
            "type": "boolean", "description": "binary extension: return this output as raw bytes"}}})] = None


class V2InferRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    id: str | None = None
    parameters: Annotated[dict[str, Any] | None, WithJsonSchema({
        "type": ["object", "null"], "properties": {"binary_data_output": {
            "type": "boolean", "description": "binary extension: every output as raw bytes"}}})] = None
    # maxItems only in the document: the codec's own message names the input it expects
    inputs: list[V2RequestInput] = Field(min_length=1, description="exactly one input, 'pixels'",
                                         json_schema_extra={"maxItems": 1})
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
    parameters: dict[str, Any] | None = Field(None, description="outputs: class_names, when the manifest has them")


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str = Field(description="numpy-mlp (dense layers), numpy-cnn (convolutions) or numpy-net")
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelIndexEntry(BaseModel):
    name: str
    versions: list[str]
    state: Literal["READY", "UNAVAILABLE"]
    reason: str = Field(description="why not ready, else empty")


class V2ModelIndex(BaseModel):
    models: list[V2ModelIndexEntry]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool
    error: str | None = Field(None, description="why not, when not ready")


class V2ModelReady(BaseModel):
    name: str
    version: str
    ready: bool


# ---------------------------------------------------------------- jobs (responses of service.jobs.api)

JobState = Literal["queued", "started", "finished", "failed", "canceled", "canceling"]


class JobAccepted(BaseModel):
    job_id: str
    status: JobState
    status_url: str


class JobStatus(BaseModel):
    """A job as ``GET /v1/jobs/<id>`` describes it; scoring and training add their own fields."""

    model_config = ConfigDict(extra="allow")
    job_id: str
    status: JobState
    status_url: str
    type: Literal["score", "train"] | None = None
    result_url: str | None = Field(None, description="a finished scoring job's result CSV")
    progress: float | None = None
    error: str | None = None


class JobList(BaseModel):
    jobs: list[JobStatus]
