"""Adaptive batching: concurrent requests of one worker process merged into one forward pass.

What Triton's dynamic batcher and TF Serving's batching do, for the threads of one gunicorn
worker. A request's rows join a queue per ``Model`` object (so per resolved version: a hot swap
starts a new queue and never mixes two versions inside one pass). The oldest waiting request's
thread leads: it waits until the queue holds ``MAX_BATCH_SIZE`` rows, or a request from every
thread of the process (``THREADS``, gunicorn's and the settings': nobody else can arrive), or until
``MAX_BATCH_DELAY_US`` after its own arrival; takes whole requests in arrival order up to
``MAX_BATCH_SIZE`` rows, runs one forward pass, hands every caller exactly its rows, and passes the
lead to the oldest request still waiting. One pass runs at a time per model: requests that arrive
meanwhile form the next batch, so batches grow with the load even with a delay of 0, where a lone
request waits for nobody.

Validation happens before a request reaches the queue, so a batch holds only valid rows. If the
merged pass raises anyway, nobody can tell whose rows caused it: each request of the batch is then
run on its own, so an error reaches only the request whose pass fails.

Metrics (module level, as prometheus_client registers them once per process; in gunicorn's
multiprocess mode they appear in every worker's ``/metrics``): rows and requests per batched pass,
and each request's wait in the queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from prometheus_client import Histogram

from core.model import Model

BATCH_ROWS = Histogram("mnist_batch_size_rows", "Rows per batched forward pass (adaptive batching)", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
BATCH_REQUESTS = Histogram("mnist_batch_size_requests", "Requests merged into one batched forward pass", ["model"],
                           buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
QUEUE_DELAY = Histogram("mnist_batch_queue_delay_seconds", "Time from a request joining the batch queue to the "
                        "start of its forward pass", ["model"],
                        buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
Prediction = tuple[np.ndarray, np.ndarray]  # labels (n,), probabilities (n, 10)


class _Request:
    """One caller's rows and, once its batch has run, its answer or its error."""

    __slots__ = ("answer", "enqueued", "error", "lead", "pixels", "wake")

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.enqueued = time.monotonic()
        self.wake = threading.Event()
        self.lead = False  # woken to lead the next batch rather than with an answer
        self.answer: Prediction | None = None
        self.error: BaseException | None = None

    def result(self) -> Prediction:
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


class _Lane:
    """The queue of one Model object; it exists while that model has requests waiting or running."""

    def __init__(self, model: Model, lock: threading.Lock) -> None:
        self.model = model  # held, so id(model) cannot be reused by another object meanwhile
        self.queue: deque[_Request] = deque()
        self.rows = 0
        self.leading = False  # a thread is collecting or running this lane's batch
        self.arrived = threading.Condition(lock)


class Batcher:
    """Merges concurrent ``predict`` calls on the same Model into forward passes of at most
    ``max_batch_size`` rows, waiting at most ``max_delay`` seconds for a batch to fill."""

    def __init__(self, max_batch_size: int, max_delay: float, max_callers: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        # How many callers this process can have at once (gunicorn's THREADS): once that many are
        # queued, nobody else can arrive, and waiting out the delay would only add latency.
        self.max_callers = max_callers
        self._lock = threading.Lock()
        self._lanes: dict[int, _Lane] = {}

    def predict(self, model: Model, pixels: np.ndarray) -> Prediction:
        """(labels, probabilities) for ``pixels``, from ``model``, possibly in a pass shared with others."""
        if len(pixels) >= self.max_batch_size:  # nothing to merge with (and 1 turns batching off)
            return model.predict(pixels)
        request = _Request(pixels)
        with self._lock:
            lane = self._lanes.get(id(model))
            if lane is None:
                lane = self._lanes[id(model)] = _Lane(model, self._lock)
            lane.queue.append(request)
            lane.rows += len(pixels)
            leads = not lane.leading
            if leads:
                lane.leading = True
            elif lane.rows >= self.max_batch_size or len(lane.queue) == self.max_callers:
                lane.arrived.notify()  # the batch is full, or every thread is in it: no more waiting
        if not leads:
            request.wake.wait()
            if not request.lead:
                return request.result()
        self._lead(lane, request)
        return request.result()

    def _lead(self, lane: _Lane, own: _Request) -> None:
        """Collect and run one batch (``own`` is the oldest request, so it is in it), then pass the lead on."""
        with self._lock:
            deadline = own.enqueued + self.max_delay
            while lane.rows < self.max_batch_size and len(lane.queue) != self.max_callers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                lane.arrived.wait(remaining)
            batch: list[_Request] = []
            rows = 0
            while lane.queue and rows + len(lane.queue[0].pixels) <= self.max_batch_size:
                request = lane.queue.popleft()
                batch.append(request)
                rows += len(request.pixels)
            lane.rows -= rows
        try:
            self._run(lane.model, batch, rows)
        except BaseException as exc:  # interrupted (a worker shutting down): nobody may wait forever
            for request in batch:
                if request.answer is None and request.error is None:
                    request.error = RuntimeError(f"batched forward pass interrupted: {exc!r}")
            raise
        finally:
            with self._lock:
                if lane.queue:
                    lane.queue[0].lead = True
                    lane.queue[0].wake.set()
                else:
                    lane.leading = False
                    del self._lanes[id(lane.model)]  # an idle lane keeps no model alive
            for request in batch:
                if request is not own:
                    request.wake.set()

    def _run(self, model: Model, batch: list[_Request], rows: int) -> None:
        started = time.monotonic()
        name = model.name
        for request in batch:
            QUEUE_DELAY.labels(name).observe(started - request.enqueued)
        BATCH_ROWS.labels(name).observe(rows)
        BATCH_REQUESTS.labels(name).observe(len(batch))
        pixels = batch[0].pixels if len(batch) == 1 else np.concatenate([r.pixels for r in batch])
        try:
            labels, probabilities = model.predict(pixels)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # Whose rows broke the merged pass is unknown: each request alone, so that an error
            # reaches only the request whose own pass fails and the others still get answers.
            for request in batch:
                try:
                    request.answer = model.predict(request.pixels)
                except Exception as own_exc:
                    request.error = own_exc
            return
        offset = 0
        for request in batch:
            end = offset + len(request.pixels)
            request.answer = labels[offset:end], probabilities[offset:end]
            offset = end
