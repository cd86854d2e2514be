"""The V2 protocol over gRPC, through a raw grpcio stub, against the app's own gRPC server in this process.

``service.server.grpc_server.start`` serves a real ``grpc.server`` on a loopback port over an
in-process app's state (as each gunicorn worker does over its own): typed and raw tensors, every
malformed request with its status code and the message REST gives, limits, deadlines,
cancellation, health, reflection, the API key and a draining stop. tritonclient and gunicorn are
in test_grpc_gunicorn.py.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
from flask import Flask
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core.model import Model
from service.app import create_app
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from service.server import grpc_server
from service.state import STATE_KEY
from tests.api.conftest import NO_REDIS, _settings
from tests.conftest import API_KEY
from tests.support import free_port, wait_until

Code = grpc.StatusCode
MAX_INSTANCES, MAX_BODY_BYTES = 64, 256 * 1024


def serve(app: Flask) -> tuple[grpc_server.RunningServer, grpc.Channel]:
    running = grpc_server.start(app.extensions[STATE_KEY])
    settings = app.extensions[STATE_KEY].settings
    channel = grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}",
                                    options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    return running, channel


def make_app(tmp_path: Path, base_registry: Path, **settings: object) -> Flask:
    shutil.copytree(base_registry, tmp_path / "models")
    return create_app(_settings(tmp_path / "models", tmp_path, NO_REDIS, grpc_port=free_port(),
                                grpc_host="127.0.0.1", max_instances=MAX_INSTANCES, max_body_bytes=MAX_BODY_BYTES,
                                **settings))


@pytest.fixture(scope="module")
def grpc_app(tmp_path_factory: pytest.TempPathFactory, base_registry: Path) -> Flask:
    return make_app(tmp_path_factory.mktemp("grpc"), base_registry)


@pytest.fixture(scope="module")
def stub(grpc_app: Flask) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    running, channel = serve(grpc_app)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()
    running.stop()


def infer_request(pixels: np.ndarray, datatype: str = "FP32", raw: bool = True, model: str = "mnist",
                  version: str = "", **fields: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version, **fields)
    tensor = request.inputs.add(name="pixels", datatype=datatype, shape=pixels.shape)
    if raw:
        request.raw_input_contents.append(pixels.astype("<f4" if datatype == "FP32" else "u1").tobytes())
    elif datatype == "FP32":
        tensor.contents.fp32_contents.extend(pixels.ravel().tolist())
    else:
        tensor.contents.uint_contents.extend(pixels.ravel().astype(int).tolist())
    return request


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    arrays = {}
    for i, tensor in enumerate(response.outputs):
        dtype = np.float32 if tensor.datatype == "FP32" else np.int64
        if response.raw_output_contents:
            flat = np.frombuffer(response.raw_output_contents[i], dtype="<f4" if dtype is np.float32 else "<i8")
        else:
            flat = np.array(tensor.contents.fp32_contents if dtype is np.float32 else tensor.contents.int64_contents,
                            dtype=dtype)
        arrays[tensor.name] = flat.reshape(list(tensor.shape))
    return arrays


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(("datatype", "raw"), [("FP32", True), ("FP32", False), ("UINT8", True), ("UINT8", False)])
def test_infer_in_both_content_forms_matches_the_model(stub, digits, local_models: dict[int, Model], datatype: str,
                                                       raw: bool) -> None:
    pixels = digits[0][:16]
    response = stub.ModelInfer(infer_request(pixels, datatype, raw, id="req-7"))
    assert (response.model_name, response.model_version, response.id) == ("mnist", "1", "req-7")
    assert bool(response.raw_output_contents) is raw  # answered in the form asked in
    outputs = outputs_of(response)
    np.testing.assert_allclose(outputs["probabilities"], local_models[1].predict_proba(pixels), atol=1e-6)
    assert outputs["labels"].tolist() == local_models[1].predict(pixels)[0].tolist()


def test_a_version_and_chosen_outputs(stub, digits, local_models) -> None:
    request = infer_request(digits[0][:4], version="2")
    request.outputs.add(name="labels")
    response = stub.ModelInfer(request)
    assert response.model_version == "2" and [o.name for o in response.outputs] == ["labels"]
    assert outputs_of(response)["labels"].tolist() == local_models[2].predict(digits[0][:4])[0].tolist()


def test_health_metadata_and_readiness(stub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live and stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="mnist", version="2")).ready
    assert rpc_error(lambda: stub.ModelReady(pb.ModelReadyRequest(name="mnist", version="9"))).code() == Code.NOT_FOUND
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "mnist-serve" and server.version
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"))
    assert (meta.name, list(meta.versions), meta.platform) == ("mnist", ["1", "2"], "numpy-mlp")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("pixels", "FP32", [-1, 784])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 10]), ("labels", "INT64", [-1])]
    assert list(stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist", version="2")).versions) == ["2"]


def _no_inputs() -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="mnist")


def _both_forms() -> pb.ModelInferRequest:
    request = infer_request(np.zeros((1, 784)))
    request.inputs[0].contents.fp32_contents.extend([0.0] * 784)
    return request


def _wrong_raw_size() -> pb.ModelInferRequest:
    request = infer_request(np.zeros((2, 784)))
    request.raw_input_contents[0] = request.raw_input_contents[0][:-4]
    return request


def _wrong_count() -> pb.ModelInferRequest:
    request = infer_request(np.zeros((2, 784)), raw=False)
    del request.inputs[0].contents.fp32_contents[-1]
    return request


def _unknown_output() -> pb.ModelInferRequest:
    request = infer_request(np.zeros((1, 784)))
    request.outputs.add(name="logits")
    return request


def _renamed() -> pb.ModelInferRequest:
    request = infer_request(np.zeros((1, 784)))
    request.inputs[0].name = "image"
    return request


def _not_finite() -> pb.ModelInferRequest:
    pixels = np.zeros((1, 784))
    pixels[0, 5] = np.nan
    return infer_request(pixels, raw=False)


MALFORMED = {
    "wrong datatype": (lambda: infer_request(np.zeros((1, 784)), "INT32"), Code.INVALID_ARGUMENT,
                       "inputs[0].datatype: 'INT32' is not supported, use FP32 or UINT8"),
    "wrong shape": (lambda: infer_request(np.zeros((1, 783))), Code.INVALID_ARGUMENT,
                    "inputs[0].shape: expected [n, 784], got [1, 783]"),
    "missing input": (_no_inputs, Code.INVALID_ARGUMENT, "inputs: expected exactly one input tensor 'pixels', got 0"),
    "input named wrong": (_renamed, Code.INVALID_ARGUMENT, "inputs[0].name: unknown input 'image'"),
    "zero rows": (lambda: infer_request(np.zeros((0, 784))), Code.INVALID_ARGUMENT,
                  "inputs[0].shape[0]: empty list, expected at least one instance"),
    "pixel over 255": (lambda: infer_request(np.full((2, 784), 256.0), raw=False), Code.INVALID_ARGUMENT,
                       "inputs[0].contents.fp32_contents[0][0]: pixel value 256 is outside 0..255"),
    "uint8 over 255": (lambda: infer_request(np.full((1, 784), 300), "UINT8", raw=False), Code.INVALID_ARGUMENT,
                       "inputs[0].contents.uint_contents[0][0]: pixel value 300 is outside 0..255"),
    "not finite": (_not_finite, Code.INVALID_ARGUMENT, "inputs[0].contents.fp32_contents[0][5]: nan is not a finite"),
    "raw size": (_wrong_raw_size, Code.INVALID_ARGUMENT, "raw_input_contents[0]: 6268 bytes of raw data, shape "
                                                         "[2, 784] of float32 needs 6272"),
    "raw pixel over 255": (lambda: infer_request(np.full((1, 784), 256.0)), Code.INVALID_ARGUMENT,
                           "raw_input_contents[0][0][0]: pixel value 256 is outside 0..255"),
    "contents count": (_wrong_count, Code.INVALID_ARGUMENT, "inputs[0].contents.fp32_contents: shape [2, 784] needs "
                                                            "1568 values, got 1567"),
    "both forms": (_both_forms, Code.INVALID_ARGUMENT, "inputs[0]: give either contents or raw_input_contents"),
    "unknown output": (_unknown_output, Code.INVALID_ARGUMENT, "outputs[0].name: unknown output 'logits'"),
    "unknown model": (lambda: infer_request(np.zeros((1, 784)), model="fashion"), Code.NOT_FOUND,
                      "unknown model 'fashion': this server serves 'mnist'"),
    "unknown version": (lambda: infer_request(np.zeros((1, 784)), version="9"), Code.NOT_FOUND, "no version 9"),
    "version not a number": (lambda: infer_request(np.zeros((1, 784)), version="v2"), Code.NOT_FOUND,
                             "model has no version 'v2': versions are positive integers"),
    "too many rows": (lambda: infer_request(np.zeros((MAX_INSTANCES + 1, 784))), Code.RESOURCE_EXHAUSTED,
                      f"inputs[0].shape[0]: {MAX_INSTANCES + 1} instances, at most {MAX_INSTANCES} per request"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_gets_its_code_and_a_message_naming_the_field(stub, digits, case: str) -> None:
    make, code, message = MALFORMED[case]
    error = rpc_error(lambda: stub.ModelInfer(make()))
    assert error.code() == code and message in error.details(), (error.code(), error.details())
    # ...and the server keeps serving
    assert outputs_of(stub.ModelInfer(infer_request(digits[0][:1])))["labels"].shape == (1,)


def test_the_same_refusal_says_the_same_over_rest(stub, grpc_app: Flask) -> None:
    """REST V2's {"error": ...} and gRPC's details are one message from one check."""
    client = grpc_app.test_client()
    for shape, data in (([1, 783], [0] * 783), ([1, 784], [300] * 784)):
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": shape, "data": data}]}
        rest = client.post("/v2/models/mnist/infer", data=orjson.dumps(body), content_type="application/json")
        request = infer_request(np.array(data, dtype=np.float64).reshape(shape), raw=False)
        over_grpc = rpc_error(lambda request=request: stub.ModelInfer(request)).details()
        assert rest.status_code == 422
        # the field's path differs only in naming the protobuf field the values came in
        assert rest.get_json()["error"].replace("inputs[0].data", "inputs[0].contents.fp32_contents") == over_grpc


def test_a_message_over_the_body_limit_is_refused_and_the_server_goes_on(stub, digits) -> None:
    oversize = infer_request(np.zeros((MAX_BODY_BYTES // (784 * 4) + 1, 784)))
    error = rpc_error(lambda: stub.ModelInfer(oversize))
    assert error.code() == Code.RESOURCE_EXHAUSTED and str(MAX_BODY_BYTES) in error.details()
    assert stub.ModelInfer(infer_request(digits[0][:2])).model_version == "1"


class HeldForwardPass:
    """An app's dataplane whose inference waits until the test releases it: calls stay in flight."""

    def __init__(self, app: Flask) -> None:
        self.dataplane = app.extensions[STATE_KEY].dataplane
        self.entered, self.release = threading.Event(), threading.Event()
        self.infer = self.dataplane.infer
        self.dataplane.infer = self.held

    def held(self, *args: object) -> object:
        self.entered.set()
        assert self.release.wait(10)
        return self.infer(*args)


def test_deadlines_and_cancelled_calls_leave_the_server_serving(tmp_path: Path, base_registry: Path,
                                                                digits) -> None:
    app = make_app(tmp_path, base_registry)
    held = HeldForwardPass(app)
    running, channel = serve(app)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        assert rpc_error(lambda: stub.ModelInfer(infer_request(digits[0][:2]), timeout=0.3)).code() == \
            Code.DEADLINE_EXCEEDED  # the pass is still held
        held.entered.clear()
        cancelled = stub.ModelInfer.future(infer_request(digits[0][:2]))
        assert held.entered.wait(10)
        assert cancelled.cancel() and cancelled.cancelled()
        held.release.set()
        assert stub.ModelInfer(infer_request(digits[0][:1]), timeout=10).model_version == "1"
    finally:
        held.release.set()
        channel.close()
        running.stop()


def test_health_service_and_reflection(grpc_app: Flask, stub) -> None:
    port = grpc_app.extensions[STATE_KEY].settings.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_the_api_key_rules_are_rest_s(tmp_path: Path, base_registry: Path, digits) -> None:
    app = make_app(tmp_path, base_registry, require_key_for_all=True)
    running, channel = serve(app)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # probes stay open, as over REST
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        error = rpc_error(lambda: stub.ModelInfer(infer_request(digits[0][:1])))
        assert error.code() == Code.UNAUTHENTICATED and "Authorization: Bearer <API_KEY>" in error.details()
        wrong = rpc_error(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="mnist"),
                                                     metadata=[("authorization", "Bearer nope")]))
        assert wrong.code() == Code.PERMISSION_DENIED and wrong.details() == "invalid API key"
        key = [("authorization", f"Bearer {API_KEY}")]
        assert stub.ModelInfer(infer_request(digits[0][:1]), metadata=key).model_version == "1"
    finally:
        channel.close()
        running.stop()


def test_stop_lets_calls_in_flight_finish_and_refuses_new_ones(tmp_path: Path, base_registry: Path, digits) -> None:
    app = make_app(tmp_path, base_registry)
    held = HeldForwardPass(app)
    running, channel = serve(app)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    in_flight = stub.ModelInfer.future(infer_request(digits[0][:3]), timeout=20)
    assert held.entered.wait(10)
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    address = f"127.0.0.1:{app.extensions[STATE_KEY].settings.grpc_port}"

    def refuses_new_calls() -> bool:
        with grpc.insecure_channel(address) as fresh:
            try:
                pb_grpc.GRPCInferenceServiceStub(fresh).ServerLive(pb.ServerLiveRequest(), timeout=5)
            except grpc.RpcError as exc:
                return exc.code() == Code.UNAVAILABLE
        return False

    try:
        wait_until(refuses_new_calls, 10, "the stopping server to refuse new calls")  # the held one still runs
        assert not in_flight.done()
    finally:
        held.release.set()
    assert outputs_of(in_flight.result())["labels"].shape == (3,)  # drained, not cut off
    stopper.join(10)
    assert not stopper.is_alive()
    channel.close()


def test_calls_are_in_the_access_log_and_the_version_statistics(stub, grpc_app: Flask, digits, access_lines) -> None:
    """Each call writes a JSON access line as a REST request does (transport, method, code, version),
    and an inference counts in its version's statistics, the ones the V2 stats endpoint answers."""
    client = grpc_app.test_client()

    def counts(version: str) -> tuple[int, int]:
        (entry,) = client.get(f"/v2/models/mnist/versions/{version}/stats").json["model_stats"]
        return entry["inference_stats"]["success"]["count"], entry["inference_stats"]["fail"]["count"]

    before = counts("2")
    stub.ModelInfer(infer_request(digits[0][:3], version="2"))
    rpc_error(lambda: stub.ModelInfer(infer_request(digits[0][:1] + 300, version="2")))
    stub.ServerLive(pb.ServerLiveRequest())
    assert counts("2") == (before[0] + 1, before[1] + 1)
    grpc_lines = [line for line in access_lines if line.get("transport") == "grpc"]
    assert [(line["endpoint"], line["status"], line["model"], line["model_version"]) for line in grpc_lines] == [
        ("ModelInfer", "OK", "mnist", 2), ("ModelInfer", "INVALID_ARGUMENT", "mnist", 2),
        ("ServerLive", "OK", None, None)]
    first = grpc_lines[0]
    assert first["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert first["remote"].startswith("ipv4:127.0.0.1")
    assert first["bytes_in"] > 3 * 784 * 4 and first["duration_ms"] > 0


def test_a_sample_of_zero_still_logs_every_refusal(tmp_path: Path, base_registry: Path, digits, access_lines) -> None:
    app = make_app(tmp_path, base_registry, access_log_sample=0.0)
    running, channel = serve(app)
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(infer_request(digits[0][:1]))
        rpc_error(lambda: stub.ModelInfer(infer_request(digits[0][:1], model="nope")))
    finally:
        channel.close()
        running.stop()
    assert [(line["status"], line["model"]) for line in access_lines if line.get("transport") == "grpc"] == [
        ("NOT_FOUND", "unknown")]
