"""grpcio, grpcio-health-checking, grpcio-reflection and protobuf: what service/server/grpc_server.py
and the generated modules in service/protocols/grpc_v2/ rely on.

All public API, but three behaviours are assumed rather than typed: a port that cannot be bound
raises ``RuntimeError`` from ``add_insecure_port`` (the gunicorn hook then stops the worker with a
message), the health servicer ignores ``set`` once ``enter_graceful_shutdown`` ran (the readiness
thread may set a status while the worker stops), and the generated stubs import (their guards
compare grpcio and protobuf with the versions ``make proto`` ran with, through
``grpc._utilities.first_version_is_lower``).
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2

from tests.contracts.contract import Contract

GRPC = Contract("grpcio")
HEALTH = Contract("grpcio-health-checking")
REFLECTION = Contract("grpcio-reflection")
PROTOBUF = Contract("protobuf")


def test_every_name_the_project_takes_is_there() -> None:
    GRPC.names_used("grpc")
    HEALTH.names_used("grpc_health")
    REFLECTION.names_used("grpc_reflection")


def test_the_generated_modules_import_and_their_version_guard_is_there() -> None:
    with PROTOBUF.behaviour("the generated messages (protobuf's runtime version check)"):
        from service.protocols.grpc_v2 import grpc_predict_v2_pb2

        assert grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    with GRPC.behaviour("the generated stubs' grpcio version check (grpc._utilities.first_version_is_lower)"):
        from grpc._utilities import first_version_is_lower

        from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc

        assert not first_version_is_lower(grpc.__version__, grpc_predict_v2_pb2_grpc.GRPC_GENERATED_VERSION)


def test_a_port_taken_without_reuseport_raises_runtime_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = grpc.server(ThreadPoolExecutor(max_workers=1), options=[("grpc.so_reuseport", 1)])
        try:
            server.add_insecure_port(f"127.0.0.1:{port}")
        except RuntimeError:
            return
        finally:
            server.stop(None)
    GRPC.fail("add_insecure_port on a taken port no longer raises RuntimeError")


def test_health_ignores_set_once_shutting_down() -> None:
    servicer = health.HealthServicer(experimental_non_blocking=True)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.enter_graceful_shutdown()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    with HEALTH.behaviour("HealthServicer.Check after enter_graceful_shutdown"):
        status = servicer.Check(health_pb2.HealthCheckRequest(service=""), None).status
    HEALTH.check(status == health_pb2.HealthCheckResponse.NOT_SERVING,
                 f"set() after enter_graceful_shutdown() changed the status to {status}")
