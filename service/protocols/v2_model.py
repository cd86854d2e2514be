"""What the V2 protocol says about the server and its models, Flask-free: REST V2 and gRPC answer it.

``server_ready``, ``model_metadata`` and ``ready_version`` take the app's ``ServiceState``
explicitly (no request or app context), so ``service.protocols.v2`` (HTTP) and
``service.protocols.grpc_v2`` (gRPC) give the same answers and the same errors from one place.
"""

from __future__ import annotations

import contextlib
from typing import Any

from core.digits import N_PIXELS
from core.model import class_names_of, platform_of
from core.registry import ModelUnloaded, RegistryError
from core.version import VERSION
from service.codecs.v2_codec import INPUT_NAME, OUTPUTS
from service.state import ServiceState

SERVER_NAME, SERVER_VERSION = "mnist-serve", VERSION
OUTPUT_SHAPES = {"probabilities": [-1, 10], "labels": [-1]}


def server_ready(state: ServiceState) -> str | None:
    """None when the default model can serve (or was unloaded on purpose, as Triton's readiness
    leaves unloaded models out), else why not."""
    try:
        state.predictor.get()
    except ModelUnloaded:
        pass
    except RegistryError as exc:
        return str(exc)
    return None


def ready_version(state: ServiceState, name: str, version: int | None) -> int:
    """The version that answers for ``name`` (and ``version``), loaded: 404 unknown model or
    version, 503 nothing published."""
    return state.dataplane.model(name, version).version


def _described_version(state: ServiceState, name: str, version: int | None, versions: list[int]) -> int | None:
    """The version metadata describes: the one asked for, else production, else the newest."""
    if version is not None:
        return version
    try:
        return state.registry.resolve(name)
    except RegistryError:
        return versions[-1] if versions else None


def model_metadata(state: ServiceState, name: str, version: int | None) -> dict[str, Any]:
    """V2 model metadata: versions, platform, the input and outputs (with the class names, if any)."""
    state.dataplane.predictor(name)  # 404 naming the served models
    registry = state.registry
    versions = registry.versions(name)
    if version is not None:
        registry.resolve(name, version=version)  # 404 for an unknown version
        versions = [version]
    described = _described_version(state, name, version, versions)
    manifest: dict[str, Any] = {}
    if described is not None:
        with contextlib.suppress(RegistryError):  # unreadable: describe what every model has
            manifest = registry.manifest(name, described)
    names = class_names_of(manifest)
    outputs: list[dict[str, Any]] = [{"name": output, "datatype": datatype, "shape": OUTPUT_SHAPES[output]}
                                     for output, datatype in OUTPUTS.items()]
    if names is not None:
        for output in outputs:  # probabilities[:, i] and label i both mean class_names[i]
            output["parameters"] = {"class_names": names}
    return {
        "name": name, "versions": [str(v) for v in versions], "platform": platform_of(manifest.get("architecture")),
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, N_PIXELS],
                    "parameters": {"also_accepts": "UINT8", "range": "0..255, 0 = background"}}],
        "outputs": outputs,
    }
