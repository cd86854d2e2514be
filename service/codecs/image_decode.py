"""Decoding uploaded PNG or JPEG bytes into a small 8-bit grayscale image, within a memory budget.

What an image costs is its decoded size, not its bytes on the wire (a 174 KB 16-bit RGBA PNG of
4096x4096 decodes to 64 MiB), so every image is judged from its header before a pixel is decoded:
pixels (``MAX_IMAGE_PIXELS``) and decoded bytes (``MAX_IMAGE_DECODED_BYTES``), both a 413. The
decoded bytes also count against a budget per process, shared by its threads: concurrent
requests wait for each other instead of piling large images up in one worker. Decoding itself
keeps one large buffer at most: JPEG is decoded to gray at reduced scale by libjpeg, PNG is
flattened and reduced strip by strip. Flask-free: errors are ``ImageError`` subclasses that
carry the HTTP status the API answers with.
"""

from __future__ import annotations

import io
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 4096 * 4096  # default; refuse decompression bombs before decoding them
# Default decoded-bytes budget, per image and per process: a 4K (3840x2160) RGB or RGBA screenshot
# fits (Pillow holds every multi-band pixel in 4 bytes), a 4096x4096 RGBA image does not.
MAX_IMAGE_DECODED_BYTES = 32 * 1024 * 1024
DECODE_WAIT_SECONDS = 15.0  # longest an image waits for the process's decoding budget (then 503)
# Only the formats we document and test: Pillow would otherwise also open EPS (through
# Ghostscript), TIFF, ICO, PSD... each a parser more exposed to hostile input.
FORMATS = ("PNG", "JPEG")
WORK_SIDE = 512  # photos are reduced to this before analysis: plenty for a 20x20 result
STRIP_BYTES = 1024 * 1024  # a decoded image is flattened to gray one strip of about this size at a time
MIB = 1024 * 1024
# Bytes Pillow allocates per pixel, by mode: one per 8-bit single band, two for 16-bit gray,
# four for every multi-band mode (RGB is padded to 4) and for 32-bit "I"/"F".
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """The bytes are not a usable digit image; the message says why. ``status``: the HTTP status."""

    status = 422


class ImageTooLarge(ImageError):
    """The image is valid but larger than this server decodes (pixels or decoded bytes)."""

    status = 413


class ImageBusy(ImageError):
    """This process's decoding budget stayed full for ``DECODE_WAIT_SECONDS``: retry later."""

    status = 503


@dataclass(frozen=True)
class ImageBudget:
    """How many images one request may carry and how large each may be, in pixels and decoded bytes.

    ``max_decoded_bytes`` is also what one process holds decoded at once, over all its threads.
    """

    max_images: int = 256
    max_pixels: int = MAX_IMAGE_PIXELS
    max_decoded_bytes: int = MAX_IMAGE_DECODED_BYTES


class DecodeBudget:
    """Decoded image bytes in flight in one process, shared by its threads, granted first come first served.

    Threads of a gthread worker would otherwise decode several large images at once and the
    worker's memory would grow with the number of threads; here an image waits until the bytes
    it needs are free (a large one is not starved by a stream of small ones: the queue is FIFO),
    or raises ``ImageBusy`` after ``wait_seconds``.
    """

    def __init__(self, capacity: int, wait_seconds: float = DECODE_WAIT_SECONDS) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.in_use = 0
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            # An image larger than the whole budget (never, when the per-image limit is the same
            # number) still runs, alone.
            granted = self._changed.wait_for(
                lambda: self._queue[0] is ticket and (self.in_use + nbytes <= self.capacity or self.in_use == 0),
                timeout=self.wait_seconds)
            self._queue.remove(ticket)
            self._changed.notify_all()  # the next in line may fit too
            if not granted:
                raise ImageBusy(f"server busy: other images are being decoded (MAX_IMAGE_DECODED_BYTES "
                                f"{_size(self.capacity)} per process, waited {self.wait_seconds:g} s); "
                                "retry shortly")
            self.in_use += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()


@lru_cache(maxsize=8)
def process_budget(capacity: int) -> DecodeBudget:
    """The one ``DecodeBudget`` of this process for ``capacity`` (memory is per process, so is this)."""
    return DecodeBudget(capacity)


def decoded_bytes(image: Image.Image) -> int:
    """What Pillow will allocate to decode ``image`` (judged from the header, before decoding)."""
    return image.width * image.height * _PIXEL_BYTES.get(image.mode, 4)


def decode_image(data: bytes, budget: ImageBudget | None = None) -> Image.Image:
    """PNG or JPEG bytes -> 8-bit grayscale PIL image at most ``WORK_SIDE`` a side, alpha onto white.

    Memory: a JPEG is decoded by libjpeg straight to gray at 1/2..1/8 scale (``draft``); a PNG
    has no such option, so its decoded size is checked against ``max_decoded_bytes`` and the
    process's decoding budget before decoding, and it is flattened to gray and reduced one strip
    at a time, so the full-size image is the only large buffer.
    """
    budget = budget or ImageBudget()
    if not data:
        raise ImageError("empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError("not a PNG or JPEG image") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image of {_bomb_pixels(exc)} pixels is too large (at most {budget.max_pixels:,} "
                            "pixels, MAX_IMAGE_PIXELS)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"not a readable PNG or JPEG image ({_safe(exc)})") from None
    with image:
        # Judged from the header, before a pixel is decoded.
        if image.width * image.height > budget.max_pixels:
            raise ImageTooLarge(f"image of {image.width}x{image.height} pixels is too large "
                                f"(at most {budget.max_pixels:,} pixels, MAX_IMAGE_PIXELS)")
        if image.format == "JPEG":
            image.draft("L", (WORK_SIDE, WORK_SIDE))  # libjpeg decodes to gray at 1/2..1/8 scale
        size = decoded_bytes(image)
        if size > budget.max_decoded_bytes:
            raise ImageTooLarge(f"image of {image.width}x{image.height} {image.mode} pixels needs {_size(size)} "
                                f"decoded (at most {_size(budget.max_decoded_bytes)}, MAX_IMAGE_DECODED_BYTES)")
        with process_budget(budget.max_decoded_bytes).hold(size):
            try:
                image.load()
                orientation = image.getexif().get(_EXIF_ORIENTATION)
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise ImageError(f"not a readable PNG or JPEG image ({_safe(exc)})") from None
            gray = _reduced_gray(image)
    if orientation in _ORIENTATION:  # phone photos: the camera's rotation, from EXIF
        gray = gray.transpose(_ORIENTATION[orientation])
    if max(gray.size) > WORK_SIDE:
        gray.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    return gray


def _reduced_gray(image: Image.Image) -> Image.Image:
    """Flatten to gray (alpha onto white, 16-bit scaled to 8) and box-reduce, strip by strip.

    Each strip is converted while small, so the conversions never hold a second copy of a large
    image; strips are whole multiples of the reduction factor, so the result equals reducing
    the flattened image in one go.
    """
    factor = max(1, max(image.size) // WORK_SIDE)
    width, height = image.size
    rows = max(factor, STRIP_BYTES // (width * 4) // factor * factor)
    out = Image.new("L", (-(-width // factor), -(-height // factor)))
    lut = _palette_gray(image) if image.mode == "P" else None
    for top in range(0, height, rows):
        strip = _gray(image.crop((0, top, width, min(top + rows, height))), lut)
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
    return out


def _gray(strip: Image.Image, lut: np.ndarray | None) -> Image.Image:
    mode = strip.mode
    if lut is not None:
        return Image.fromarray(lut[np.asarray(strip)])
    if mode.startswith("I"):  # 16-bit gray PNG: scale 0..65535 to 0..255 (Pillow's convert would clip)
        values = np.asarray(strip).astype(np.uint32)
        return Image.fromarray(((values + 128) // 257).clip(0, 255).astype(np.uint8))
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = strip.convert("RGBA")
        return Image.composite(rgba.convert("L"), Image.new("L", rgba.size, 255), rgba.getchannel("A"))
    return strip.convert("L")


def _palette_gray(image: Image.Image) -> np.ndarray:
    """A palette image's 256 entries as gray composited onto white (its tRNS alpha applied)."""
    palette = np.zeros((256, 3), dtype=np.float64)
    entries = np.asarray(image.getpalette("RGB") or [], dtype=np.float64).reshape(-1, 3)[:256]
    palette[:len(entries)] = entries
    alpha = np.full(256, 255.0)
    transparency = image.info.get("transparency")
    if isinstance(transparency, bytes):
        alpha[:len(transparency)] = np.frombuffer(transparency, dtype=np.uint8)[:256]
    elif isinstance(transparency, int) and 0 <= transparency < 256:
        alpha[transparency] = 0.0
    gray = palette @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2 luma, as Pillow's "L"
    return np.rint(gray * alpha / 255 + 255 * (1 - alpha / 255)).clip(0, 255).astype(np.uint8)


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:.1f} MiB" if nbytes >= MIB else f"{nbytes:,} bytes"


def _bomb_pixels(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,}" if found else "too many"


def _safe(exc: Exception) -> str:
    """An exception's message without Python object reprs (``<_io.BytesIO object at 0x...>``)."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    return text[:200] or type(exc).__name__
