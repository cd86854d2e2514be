"""``inference.GRPCInferenceService``: the Open Inference Protocol over gRPC, on the app's dataplane.

A protocol adapter like ``service.protocols.v2``: the request's tensor is checked by the same
functions as REST V2's (``service.codecs.v2_codec``), inferred through the same ``DataPlane``
object (model and version resolution, aliases, batching, metrics), and a refusal carries the same
message as REST's ``{"error": ...}`` under the gRPC status its HTTP status maps to.

Tensors come either typed (``contents.fp32_contents`` for FP32, ``uint_contents`` for UINT8) or
raw (``raw_input_contents``, as Triton's clients send them); the answer uses the same form:
raw outputs for raw inputs, typed ``contents`` otherwise.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from core.digits import N_PIXELS
from core.registry import RegistryError
from service.auth import check_authorization
from service.codecs.image_decode import ImageError
from service.codecs.instances import check_pixel_values
from service.codecs.v2_codec import OUTPUTS, check_input, check_input_count, raw_pixels
from service.inference_stats import target_version
from service.metrics import record_grpc_call
from service.protocols import v2_model
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from service.service_error import LimitExceeded, ServiceError
from service.state import ServiceState
from service.targets import parse_version

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")

# The HTTP status of a refusal -> the gRPC code that means the same (gRPC's own HTTP mapping, read backwards).
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.ABORTED,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
         422: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
         503: grpc.StatusCode.UNAVAILABLE}
# Typed contents per input datatype, and the contents field each output datatype fills.
INPUT_CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents"}
OUTPUT_CONTENTS = {"FP32": "fp32_contents", "INT64": "int64_contents"}
OUTPUT_DTYPES = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}


def code_of(status: int) -> grpc.StatusCode:
    return CODES.get(status, grpc.StatusCode.INTERNAL if status >= 500 else grpc.StatusCode.INVALID_ARGUMENT)


def served(method: Callable[[Any, Any, grpc.ServicerContext], Reply]
           ) -> Callable[[Any, Any, grpc.ServicerContext], Reply]:
    """A servicer method, recorded (``_record``: metrics, statistics, access log), whose refusals
    (``ServiceError``, ``RegistryError``, ``ImageError``: each carries its HTTP status) end the call
    with the matching status code and the same message as REST's; anything else is INTERNAL, logged."""
    name = method.__name__

    @functools.wraps(method)
    def wrapped(self: Any, request: Any, context: grpc.ServicerContext) -> Reply:
        started = time.perf_counter()
        code, message, reply = grpc.StatusCode.OK, "", None
        try:
            reply = method(self, request, context)
            return reply
        except LimitExceeded as exc:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        except (ServiceError, RegistryError, ImageError) as exc:
            status = int(getattr(exc, "status", 500))
            if status >= 500 and isinstance(exc, RegistryError):
                log.error("registry error: %s", exc)
            code, message = code_of(status), str(exc)
        except Exception:
            log.exception("gRPC %s failed", name)
            code, message = grpc.StatusCode.INTERNAL, "internal server error"
        finally:
            self._record(name, request, context, code, time.perf_counter() - started, reply)
        context.abort(code, message)  # raises: the call ends with this status
        raise AssertionError("unreachable")

    return wrapped


def optional_version(text: str) -> int | None:
    """The request's ``model_version``: empty for the server's choice, else a positive integer (404)."""
    return parse_version(text) if text else None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six V2 methods over one app's ``ServiceState``: its settings, registry and dataplane."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings

    def _record(self, method: str, request: Any, context: grpc.ServicerContext, code: grpc.StatusCode,
                seconds: float, reply: Any) -> None:
        """Metrics, inference statistics and the access-log line of one call. The version is the one
        that answered, or for a refused inference the one it was for when this process holds it."""
        model = getattr(request, "model_name", None) or getattr(request, "name", "")
        version = None
        if model and not self.state.models.serves(model):
            model = "unknown"  # a client's string: the label stays bounded to the served models
        elif model and method == "ModelInfer":
            if reply is not None:
                version = int(reply.model_version)
            else:
                version = target_version(self.state.models.predictor(model), {"version": request.model_version or None})
        record_grpc_call(method, code.name, model, seconds, version=version, peer=context.peer,
                         bytes_in=request.ByteSize, sample=self.settings.access_log_sample)

    def _check_key(self, context: grpc.ServicerContext) -> None:
        """Metadata and inference need ``authorization: Bearer <API_KEY>`` under
        ``REQUIRE_KEY_FOR_ALL``, as their REST routes do; the probes stay open."""
        if not self.settings.require_key_for_all:
            return
        metadata = dict(context.invocation_metadata())
        check_authorization(self.settings, metadata.get("authorization", ""))

    @served
    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @served
    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=v2_model.server_ready(self.state) is None)

    @served
    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        v2_model.ready_version(self.state, request.name, optional_version(request.version))
        return pb.ModelReadyResponse(ready=True)

    @served
    def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
                       ) -> pb.ServerMetadataResponse:
        self._check_key(context)
        return pb.ServerMetadataResponse(name=v2_model.SERVER_NAME, version=v2_model.SERVER_VERSION, extensions=[])

    @served
    def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
                      ) -> pb.ModelMetadataResponse:
        self._check_key(context)
        described = v2_model.model_metadata(self.state, request.name, optional_version(request.version))

        def tensors(entries: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
            return [pb.ModelMetadataResponse.TensorMetadata(name=e["name"], datatype=e["datatype"], shape=e["shape"])
                    for e in entries]

        return pb.ModelMetadataResponse(name=described["name"], versions=described["versions"],
                                        platform=described["platform"], inputs=tensors(described["inputs"]),
                                        outputs=tensors(described["outputs"]))

    @served
    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        self._check_key(context)
        name = request.model_name
        self.state.dataplane.predictor(name)  # 404 naming the served models, before the tensor is read
        version = optional_version(request.model_version)
        raw = bool(request.raw_input_contents)
        pixels = self._pixels(request)
        wanted = self._wanted_outputs(request)
        result = self.state.dataplane.infer(name, version, None, pixels)
        response = pb.ModelInferResponse(model_name=name, model_version=str(result.version), id=request.id)
        tensors = {"probabilities": result.probabilities, "labels": result.labels}
        for output in wanted:
            datatype = OUTPUTS[output]
            array = np.ascontiguousarray(tensors[output], dtype=OUTPUT_DTYPES[datatype])
            tensor = response.outputs.add(name=output, datatype=datatype, shape=array.shape)
            if raw:
                response.raw_output_contents.append(array.tobytes())
            else:
                getattr(tensor.contents, OUTPUT_CONTENTS[datatype]).extend(array.ravel().tolist())
        return response

    def _pixels(self, request: pb.ModelInferRequest) -> np.ndarray:
        """The one ``[n, 784]`` input, raw or typed, as an (n, 784) array checked as REST V2 checks it."""
        check_input_count(len(request.inputs))
        tensor = request.inputs[0]
        n, dtype = check_input(tensor.name, tensor.shape, tensor.datatype, self.settings.max_instances)
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise ServiceError(422, f"raw_input_contents: {len(request.raw_input_contents)} buffers for 1 input")
            if tensor.HasField("contents"):
                raise ServiceError(422, "inputs[0]: give either contents or raw_input_contents, not both")
            return raw_pixels(request.raw_input_contents[0], n, dtype, "raw_input_contents[0]")
        field = INPUT_CONTENTS[tensor.datatype]
        values = getattr(tensor.contents, field)
        if len(values) != n * N_PIXELS:
            raise ServiceError(422, f"inputs[0].contents.{field}: shape [{n}, {N_PIXELS}] needs {n * N_PIXELS} "
                                    f"values, got {len(values)}")
        # UINT8 arrives as uint32 values: widened, so that check_pixel_values sees anything over 255.
        array = np.asarray(values, dtype=np.float32 if tensor.datatype == "FP32" else np.int64).reshape(n, N_PIXELS)
        check_pixel_values(array, range(n), field=f"inputs[0].contents.{field}")
        return array

    @staticmethod
    def _wanted_outputs(request: pb.ModelInferRequest) -> list[str]:
        """The outputs asked for, in order; both when none are named."""
        if not request.outputs:
            return list(OUTPUTS)
        for i, output in enumerate(request.outputs):
            if output.name not in OUTPUTS:
                raise ServiceError(422, f"outputs[{i}].name: unknown output {output.name!r} "
                                        f"(available: {', '.join(OUTPUTS)})")
        return [output.name for output in request.outputs]

