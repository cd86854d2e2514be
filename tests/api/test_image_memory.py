"""Memory of image decoding in a real gunicorn worker: concurrent large images neither pile up nor stay.

The issue: 8 concurrent 174 KB uploads (4096x4096 16-bit RGBA PNGs) pushed each worker to about
1.1 GB and about 120 MB stayed. Here one worker with 4 threads gets 16 of those and 16 of the
largest image the default limits accept, all at once; its peak RSS (``VmHWM``, reset just before)
must stay within the goal, and its RSS must come back near where it was (the figures before the
fix: docs/decisions/0010-image-decoding-budget.md).
"""

from __future__ import annotations

import numpy as np

from bench.images import burst, memory_kib, reset_peak, worker_pid
from tests.api.pngs import digit_canvas, encode_png
from tests.support import wait_until

BURST = 16
PEAK_BOUND_MIB = 100  # the goal; measured about 40 MiB
HELD_BOUND_MIB = 25  # measured 1-2 MiB once the burst is over


def test_concurrent_large_images_neither_pile_up_nor_stay(start_api, models_dir):
    server = start_api(models_dir, workers=1, THREADS="4")
    url = f"{server.url}/v1/models/mnist:predict_image"
    pid = worker_pid(server.proc.pid)
    issue = encode_png(digit_canvas(4096, 4, np.uint16))  # 64 MiB decoded: over the default limit
    largest = encode_png(digit_canvas(2896, 4, np.uint8))  # 32 MiB decoded: just within it
    burst(url, [encode_png(digit_canvas(280, 4, np.uint8))] * 4)  # every thread warm
    before = memory_kib(pid)["VmRSS"]
    reset_peak(pid)

    answers = burst(url, [issue] * BURST + [largest] * BURST)

    peak_mib = (memory_kib(pid)["VmHWM"] - before) / 1024
    assert peak_mib < PEAK_BOUND_MIB, f"worker peak RSS rose {peak_mib:.0f} MiB; answers {answers}"

    def settled() -> bool:
        return (memory_kib(pid)["VmRSS"] - before) / 1024 < HELD_BOUND_MIB

    wait_until(settled, 10, f"worker RSS back within {HELD_BOUND_MIB} MiB of its {before / 1024:.0f} MiB "
                            "before the burst")
    assert answers == {
        "200": BURST,
        "413 file[0] (big.png): image of 4096x4096 RGBA pixels needs 64.0 MiB decoded (at most 32.0 MiB, "
        "MAX_IMAGE_DECODED_BYTES)": BURST,
    }
