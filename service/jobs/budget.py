"""The disk budget of ``JOBS_DIR``: an upload that would take it past ``JOBS_DISK_BUDGET_BYTES`` is a 507.

Accounting is a walk of ``JOBS_DIR`` with ``os.scandir`` summing file sizes, done when an upload
starts: one ``stat`` per file, about 14 ms per thousand jobs on a busy 2-core machine, small beside
any upload, and nothing to keep in step with the worker's writes and the retention cleanup.

Concurrent uploads, two cases:

- **Declared size** (``Content-Length``): checked before a byte is read, then *reserved*: an empty
  marker ``.reserved-<bytes>`` in the job's directory makes every later scan count that directory
  as ``max(reserved, its files)``. Check and reservation happen under an exclusive ``flock`` on
  ``JOBS_DIR`` (every API process on the host sees it), so two uploads cannot both fit the same
  last gigabyte. The body can never exceed its Content-Length, so such an upload is not
  re-checked while streaming. A marker older than ``RESERVATION_MAX_AGE`` (the process died
  mid-upload) no longer counts.
- **Undeclared size** (chunked): its bytes are counted as they arrive against the usage of the
  others, which is scanned again every ``RESCAN_BYTES``; concurrent chunked uploads can thus
  overshoot the budget by at most that much each. Partial files sit in ``JOBS_DIR``, so every
  scan sees them.

A full disk (``ENOSPC``, ``EDQUOT``) while receiving is the same 507; the caller removes the
job's directory on any failure, so nothing half-written stays behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import request

from core.settings import Settings
from service.service_error import ServiceError

log = logging.getLogger(__name__)

RESERVED_PREFIX = ".reserved-"
RESERVATION_MAX_AGE = 6 * 3600.0  # longer than any upload; a marker left by a killed process expires
RESCAN_BYTES = 8 << 20
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _directory_usage(path: str, now: float) -> int:
    """Bytes of the files under ``path``, or its live reservation when that is larger."""
    files = reserved = 0
    pending = [path]
    while pending:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we looked (renamed, expired)
                    continue
                if entry.name.startswith(RESERVED_PREFIX):
                    amount = entry.name[len(RESERVED_PREFIX):]
                    if amount.isdigit() and now - stat.st_mtime < RESERVATION_MAX_AGE:
                        reserved = max(reserved, int(amount))
                else:
                    files += stat.st_size
    return max(files, reserved)


def usage(jobs_dir: Path, exclude: str | None = None) -> int:
    """Bytes held in ``jobs_dir`` (uploads, results, partial uploads, reservations), but ``exclude``'s."""
    now = time.time()
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(jobs_dir) as entries:
        for entry in entries:
            if entry.name == exclude:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    total += _directory_usage(entry.path, now)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def _over_budget(used: int, incoming: str, budget: int) -> ServiceError:
    return ServiceError(507, f"job storage is full: {used} bytes of the {budget}-byte budget "
                         f"(JOBS_DISK_BUDGET_BYTES) are in use, {incoming}; retry when older jobs have "
                         f"expired or were deleted")


def disk_full() -> ServiceError:
    return ServiceError(507, "job storage is full: the server's disk has no room left for this upload; "
                         "retry later")


@contextlib.contextmanager
def _locked(jobs_dir: Path) -> Iterator[None]:
    """An exclusive lock on the directory itself (no lock file to list or to clean up)."""
    fd = os.open(jobs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class Allowance:
    """What one upload may still write; ``charge(n)`` before writing ``n`` bytes raises 507 past it."""

    def __init__(self, jobs_dir: Path, own: str, budget: int, others: int, reserved: int | None) -> None:
        self.jobs_dir, self.own, self.budget = jobs_dir, own, budget
        self.others, self.reserved = others, reserved
        self.written = 0
        self._scanned_at = 0

    def charge(self, nbytes: int) -> None:
        self.written += nbytes
        if not self.budget or self.reserved is not None:  # no budget, or room reserved up front
            return
        if self.written - self._scanned_at >= RESCAN_BYTES:
            self.others, self._scanned_at = usage(self.jobs_dir, exclude=self.own), self.written
        if self.others + self.written > self.budget:
            raise _over_budget(self.others, f"and this upload has reached {self.written} bytes", self.budget)


def _admit(settings: Settings, directory: Path, declared: int | None) -> Allowance:
    jobs_dir, budget = settings.jobs_dir, settings.jobs_disk_budget_bytes
    directory.mkdir(parents=True, exist_ok=True)
    if declared is not None:
        disk = os.statvfs(jobs_dir)
        if declared > disk.f_bavail * disk.f_frsize:
            raise disk_full()
    if not budget:
        return Allowance(jobs_dir, directory.name, 0, 0, None)
    with _locked(jobs_dir):
        others = usage(jobs_dir, exclude=directory.name)
        if others + (declared or 0) > budget:
            incoming = f"this upload is {declared} bytes" if declared is not None else "no room is left"
            raise _over_budget(others, incoming, budget)
        if declared is not None:
            (directory / f"{RESERVED_PREFIX}{declared}").touch()
    return Allowance(jobs_dir, directory.name, budget, others, declared)


@contextlib.contextmanager
def receiving(settings: Settings, directory: Path) -> Iterator[Allowance]:
    """Admit an upload into the job's ``directory`` (507 when it cannot fit) and yield its allowance.

    The reservation is dropped on the way out: once the upload is in place its files count
    for themselves; on a failure the caller removes the directory. A full disk is a 507 too.
    """
    try:
        yield _admit(settings, directory, request.content_length)
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        log.warning("job upload refused, the disk holding JOBS_DIR is full: %s", exc)
        raise disk_full() from None
    finally:
        for marker in directory.glob(f"{RESERVED_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
