"""The work horse as a process: it dies with its worker, and only it is ever signalled.

RQ forks a work horse per job and puts it in a process group of its own. Two things RQ leaves
open are closed here:

- A SIGKILLed worker used to leave its horse running, unsupervised, while another worker
  retried the job. Right after the fork the horse asks Linux (``prctl(PR_SET_PDEATHSIG)``) to
  be killed when its parent dies.
- RQ's ``kill_horse`` did ``os.killpg(os.getpgid(self.horse_pid), SIGKILL)``. RQ sets
  ``horse_pid`` to 0 only after a Redis call that follows the reaping, and ``getpgid(0)`` is the
  caller's own group: a stop command in that window SIGKILLed the worker and everything that
  shared its group (the API and Redis under one init or shell script). ``signal_horse``
  signals a pid only once /proc shows it is a child of this process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter already links
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d); the job's lock still fences it", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died between fork() and prctl()
        os._exit(1)


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` from /proc (None when it has gone, or on a system without /proc)."""
    try:
        # The command name in parentheses may hold spaces or ')': the fields start after the last ')'.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def is_own_child(pid: int) -> bool:
    """``pid`` is a process this one forked and has not reaped yet (a zombie counts: its pid is not reused)."""
    return pid > 1 and pid != os.getpid() and parent_of(pid) == os.getpid()


def signal_horse(pid: int, sig: int) -> bool:
    """Send ``sig`` to the horse ``pid`` and the group it leads; False, sending nothing, unless ``pid``
    is a child of this process. In the instant between the fork and the horse's ``setpgrp`` it is
    still in this process's group, and then only the horse itself is signalled."""
    if not is_own_child(pid):
        return False
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
