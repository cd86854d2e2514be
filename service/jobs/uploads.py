"""Uploads for the job endpoints, streamed to disk: never held whole in memory, never in Redis.

A raw body (``text/csv``, NPZ bytes) is copied from ``request.stream`` in 1 MiB blocks to a
temporary name and renamed; a multipart form is parsed by werkzeug with a stream factory
that writes each file part straight into the job's directory. Past ``max_upload_bytes`` the
partial file is removed and the request is answered 413. The declared Content-Length is
checked once for every job endpoint, in ``service.app._limit_body_size``, before the view runs.
Every block is charged to the upload's allowance first (``service.jobs.budget``: the disk budget
of JOBS_DIR), so an upload that does not fit stops at the block that would not.

A form may carry only the file fields its endpoint reads, each once, and at most
``MAX_FORM_PARTS`` parts in all: every file part is an open file, so an unbounded count of
tiny parts would run the process out of file descriptors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from core.jobs import TMP_PREFIX
from service.service_error import ServiceError

BLOCK = 1 << 20
MAX_FORM_PARTS = 16  # the train form has at most 3 files and 4 fields; room to spare, no more


def _too_large(limit: int) -> ServiceError:
    return ServiceError(413, f"upload is larger than the {limit}-byte limit (MAX_UPLOAD_BYTES)")


Charge = Callable[[int], None]  # called with a block's size before it is written; raises to refuse it


def save_body(target: Path, limit: int, charge: Charge) -> int:
    """Copy the request body to ``target`` (temporary name, then rename); returns its size."""
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
                charge(len(block))
                out.write(block)
        if size == 0:
            raise ServiceError(400, "the request body is empty: send the file as the body")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return size


@dataclass
class Upload:
    """A file part saved under a temporary name in the job's directory."""

    path: Path
    filename: str  # as the client named it ('' when it gave none): a hint of the format only


def _unexpected(allowed: tuple[str, ...]) -> str:
    return f"accepted file fields here: {', '.join(repr(name) for name in allowed)}, each once"


class _ChargedFile:
    """A file part's temporary file that charges every write to the upload's allowance."""

    def __init__(self, handle: IO[bytes], charge: Charge) -> None:
        self._handle, self._charge = handle, charge

    def write(self, data: bytes) -> int:
        self._charge(len(data))
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:  # seek, close, name, ...: the file's own
        return getattr(self._handle, name)


def parse_multipart(directory: Path, limit: int, allowed: tuple[str, ...], charge: Charge
                    ) -> tuple[MultiDict[str, str], dict[str, Upload]]:
    """Parse a multipart form, writing its file parts (only the ``allowed`` fields) into ``directory``;
    returns (text fields, file field -> upload)."""
    directory.mkdir(parents=True, exist_ok=True)
    opened: list[IO[bytes]] = []

    def stream_factory(total_content_length: int | None, content_type: str | None, filename: str | None,
                       content_length: int | None = None) -> IO[bytes]:
        # Refuse before opening one file more than the endpoint could ever use.
        if len(opened) >= len(allowed):
            raise ServiceError(400, f"multipart upload has more than {len(allowed)} file part(s); "
                                f"{_unexpected(allowed)}")
        handle = tempfile.NamedTemporaryFile(prefix=TMP_PREFIX, dir=directory, delete=False)  # noqa: SIM115
        opened.append(handle)
        return _ChargedFile(handle, charge)  # type: ignore[return-value]

    try:
        _, form, files = parse_form_data(request.environ, stream_factory=stream_factory, max_content_length=limit,
                                         max_form_memory_size=1 << 20, max_form_parts=MAX_FORM_PARTS)
        for field in files:
            if field not in allowed:
                raise ServiceError(400, f"multipart field {field!r}: unexpected file; {_unexpected(allowed)}")
            if len(files.getlist(field)) > 1:
                raise ServiceError(400, f"multipart field {field!r}: sent {len(files.getlist(field))} times; "
                                    f"{_unexpected(allowed)}")
    except RequestEntityTooLarge:
        _discard(opened)
        if request.content_length is not None:  # within the limit (checked before the view): too many parts
            raise ServiceError(413, f"multipart upload has more than {MAX_FORM_PARTS} parts") from None
        raise ServiceError(413, f"multipart upload is larger than the {limit}-byte limit (MAX_UPLOAD_BYTES) "
                            f"or has more than {MAX_FORM_PARTS} parts") from None
    except BaseException:
        _discard(opened)
        raise
    saved = {field: Upload(_file_path(storage), storage.filename or "") for field, storage in files.items()}
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


def move_into_place(source: Upload, target: Path) -> Path:
    """Rename a parsed upload part (still under its temporary name) to its final name."""
    if source.path.stat().st_size == 0:
        raise ServiceError(400, f"the uploaded file for {target.name!r} is empty")
    os.replace(source.path, target)
    return target
