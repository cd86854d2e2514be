"""Hand-written PNG files of any bit depth and colour type (Pillow cannot write 16-bit RGBA).

Used to build worst-case uploads: a large, highly compressible image (a digit on a flat
background) that is small on the wire but expensive to decode.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

# PNG colour types by number of channels: gray, gray+alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_png(array: np.ndarray) -> bytes:
    """(h, w) or (h, w, channels) uint8 or uint16 -> PNG bytes (filter 0, maximum compression)."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError("PNG samples are uint8 or uint16")
    pixels = array if array.ndim == 3 else array[:, :, None]
    height, width, channels = pixels.shape
    depth = 8 * array.dtype.itemsize
    header = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, 0)
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
    raw = np.hstack([np.zeros((height, 1), dtype=np.uint8), rows])  # filter type 0 on every row
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + png_chunk(b"IEND", b""))


def digit_canvas(side: int, channels: int, dtype: type = np.uint16) -> np.ndarray:
    """A dark bar (a "1") on white paper, opaque: ``side`` x ``side`` with ``channels`` samples."""
    top = np.iinfo(dtype).max
    shape = (side, side) if channels == 1 else (side, side, channels)
    canvas = np.full(shape, top, dtype=dtype)
    canvas[side // 5: side - side // 5, side // 2 - side // 20: side // 2 + side // 20] = top // 10
    if channels in (2, 4):
        canvas[..., -1] = top  # alpha: opaque
    return canvas
