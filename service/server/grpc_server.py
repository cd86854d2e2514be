"""The gRPC server of one API worker process: started after the app loads, stopped when the worker exits.

Each gunicorn worker (``service.server.hooks``) runs one ``grpc.server`` beside its HTTP loop, on
``GRPC_HOST:GRPC_PORT`` with SO_REUSEPORT (grpcio's default on Linux), so the kernel spreads gRPC
connections over the workers as gunicorn spreads HTTP ones, and each call uses that worker's app
state: the same loaded models, dataplane and metrics as its REST requests.

Beside ``inference.GRPCInferenceService``: the standard health service (``grpc.health.v1``: SERVING
while the default model can serve, NOT_SERVING otherwise and while shutting down) and server
reflection, so ``grpcurl`` and ``grpc_health_probe`` work without the proto. Messages are limited
to ``MAX_BODY_BYTES`` each way, the REST body limit. ``stop`` drains: calls in flight get
``GRPC_GRACE_SECONDS`` to finish, new ones are refused.

grpc is imported here only, and this module only by a worker after the fork: gunicorn's master
must never start grpc's threads before forking.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.protocols import v2_model
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from service.protocols.grpc_v2.servicer import InferenceServicer
from service.state import ServiceState

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
READINESS_INTERVAL = 1.0  # seconds between two readiness checks for the health service


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    stopping: threading.Event
    grace: float

    def stop(self) -> None:
        """Refuse new calls, let the ones in flight finish within the grace period, then return."""
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.grace).wait()


def start(state: ServiceState) -> RunningServer:
    """Serve gRPC on ``GRPC_HOST:GRPC_PORT`` with this app's state; raises ``RuntimeError`` when the
    address cannot be bound."""
    settings = state.settings
    limit = settings.max_body_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads or 4, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    server.add_insecure_port(address)  # raises RuntimeError when it cannot bind
    running = RunningServer(server, health_servicer, threading.Event(), settings.grpc_grace_seconds)
    _report_readiness(state, running)  # before the first Check can arrive, not a moment after
    server.start()
    threading.Thread(target=_follow_readiness, args=(state, running), name="grpc-readiness", daemon=True).start()
    log.info("gRPC (V2 inference protocol, health, reflection) on %s", address)
    return running


def _follow_readiness(state: ServiceState, running: RunningServer) -> None:
    """The health service's status, for the server ("") and the inference service, follows
    readiness: SERVING while the default model can serve, until shutdown begins."""
    while not running.stopping.wait(READINESS_INTERVAL):
        _report_readiness(state, running)


def _report_readiness(state: ServiceState, running: RunningServer) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if v2_model.server_ready(state) is None
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for service in ("", SERVICE_NAME):
        running.health.set(service, status)  # ignored once stopping (enter_graceful_shutdown)
