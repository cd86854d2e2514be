"""Uploads for the job endpoints, streamed to disk: never held whole in memory, never in Redis.

A raw body (``text/csv``, NPZ bytes) is copied from ``request.stream`` in 1 MiB blocks to a
temporary name and renamed; a multipart form is parsed by werkzeug with a stream factory
that writes each file part straight into the job's directory. Past ``max_upload_bytes`` the
partial file is removed and the request is answered 413.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from flask import request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from core.jobs import TMP_PREFIX
from service.errors import ApiError

BLOCK = 1 << 20


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"upload is larger than the {limit}-byte limit (MAX_UPLOAD_BYTES)")


def check_declared_length(limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)


def save_body(target: Path, limit: int) -> int:
    """Copy the request body to ``target`` (temporary name, then rename); returns its size."""
    check_declared_length(limit)
    request.max_content_length = limit  # the prediction body limit must not apply to uploads
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            stream = request.stream
            while block := stream.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise _too_large(limit)
                out.write(block)
        if size == 0:
            raise ApiError(400, "the request body is empty: send the file as the body")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return size


def parse_multipart(directory: Path, limit: int) -> tuple[MultiDict[str, str], dict[str, Path]]:
    """Parse a multipart form, writing file parts into ``directory``; returns (fields, field -> path)."""
    check_declared_length(limit)
    directory.mkdir(parents=True, exist_ok=True)
    opened: list[IO[bytes]] = []

    def stream_factory(total_content_length: int | None, content_type: str | None, filename: str | None,
                       content_length: int | None = None) -> IO[bytes]:
        handle = tempfile.NamedTemporaryFile(prefix=TMP_PREFIX, dir=directory, delete=False)  # noqa: SIM115
        opened.append(handle)
        return handle

    try:
        _, form, files = parse_form_data(request.environ, stream_factory=stream_factory,
                                         max_content_length=limit, max_form_memory_size=1 << 20)
    except RequestEntityTooLarge:
        _discard(opened)
        raise _too_large(limit) from None
    except Exception:
        _discard(opened)
        raise
    saved: dict[str, Path] = {}
    for field, storage in files.items():
        saved[field] = _file_path(storage)
    for handle in opened:
        handle.close()
    return form, saved


def _file_path(storage: FileStorage) -> Path:
    return Path(storage.stream.name)  # type: ignore[union-attr]


def _discard(opened: list[Any]) -> None:
    for handle in opened:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)


def move_into_place(source: Path, target: Path) -> Path:
    """Rename a parsed upload part (still under its temporary name) to its final name."""
    if source.stat().st_size == 0:
        raise ApiError(400, f"the uploaded file for {target.name!r} is empty")
    os.replace(source, target)
    return target
