"""gunicorn's gthread worker that accepts only while it holds no more connections than the others.

gunicorn's workers race to accept on one socket and the worker that happens to be awake wins:
with 4 keep-alive clients one worker often held all 4 (6 of 6 runs) while the other core idled.
Each worker publishes how many connections it holds in memory shared by the master's forks
(``held``, -1: a free slot), and a balanced worker leaves a new connection to a worker holding
fewer, for at most 100 ms (then it takes it: the other may be stuck).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# Created at import, in the master (the config imports this module), so that every fork shares it.
# Slots for the configured workers and some room for the ones gunicorn starts while others stop.
held = multiprocessing.RawArray("i", [-1] * (int(os.environ.get("WEB_CONCURRENCY", "2")) + 16))
BALANCE_WAIT_S = 0.1


class BalancedThreadWorker(ThreadWorker):
    """gthread, accepting only while this worker holds no more connections than another."""

    slot: int | None = None  # its index in ``held``, given by the master's pre_fork hook
    _declining_since = _last_decline = 0.0

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:  # gthread counts its connections here: publish the count
        self._nr_conns = value
        if self.slot is not None:
            held[self.slot] = value

    def run(self) -> None:
        if self.slot is not None:  # counted from now on: a worker still loading the app takes no share
            held[self.slot] = self._nr_conns
        super().run()

    def holds_more_than_another(self) -> bool:
        others = [count for i, count in enumerate(held) if count >= 0 and i != self.slot]
        return bool(others) and self._nr_conns > min(others)

    def accept(self, listener: Any) -> None:
        if self.holds_more_than_another():
            now = time.monotonic()
            if now - self._last_decline > 0.01:  # a new connection, not the same one again
                self._declining_since = now
            self._last_decline = now
            if now - self._declining_since < BALANCE_WAIT_S:  # then take it: the other may be stuck
                time.sleep(0.0005)  # the listener stays readable: do not spin while the other accepts
                return
        super().accept(listener)


def assign_slot(workers: dict[int, Any], worker: Any) -> None:
    """Give ``worker`` (about to be forked) the first slot of ``held`` no live worker uses."""
    used = {w.slot for w in workers.values() if isinstance(w, BalancedThreadWorker)}
    worker.slot = next((i for i in range(len(held)) if i not in used), None)


def free_slot(worker: Any) -> None:
    if getattr(worker, "slot", None) is not None:
        held[worker.slot] = -1
