"""Which models an operator has unloaded: a small file in the model's registry directory.

Triton's repository extension unloads a model from the whole server; here the server is several
gunicorn processes and RQ workers sharing the registry, so the decision lives where they all look:
``<root>/<name>/unloaded.json`` beside ``aliases.json``, written atomically (temporary file, then
rename) and removed on load. Its presence is part of the registry's stat fingerprint, so every
process notices an unload or a load within ``RELOAD_INTERVAL``, as it notices a new alias.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from core.durable import atomic_write, exclusive_lock, fsync_dir
from core.registry import UNLOADED_FILE, ModelRegistry


def unloaded_mark(registry: ModelRegistry, name: str) -> dict[str, Any] | None:
    """The unload record of ``name`` (``{"unloaded_at": ...}``), or None while it is loaded."""
    try:
        data = json.loads((registry.model_dir(name) / UNLOADED_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # an unreadable mark still says "unloaded": only a load removes it
        return {}
    return data if isinstance(data, dict) else {}


def set_unloaded(registry: ModelRegistry, name: str, unloaded: bool) -> bool:
    """Unload (write the mark) or load (remove it); True when this changed the state. Idempotent."""
    directory = registry.model_dir(name)
    path = directory / UNLOADED_FILE
    with exclusive_lock(directory / ".unloaded.lock"):
        if unloaded == path.exists():
            return False
        if unloaded:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            atomic_write(path, json.dumps({"unloaded_at": stamp}).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fsync_dir(directory)
        return True


def unloaded_message(name: str) -> str:
    """What a request for an unloaded model is told, with the way back."""
    return f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load to serve it again"
