"""Image inputs: MNIST-style preprocessing, photos of pen digits, multipart uploads.

The API tests run in-process (``client``/``make_client``); test_image_memory.py measures a real
gunicorn worker."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.codecs.image_decode import DecodeBudget
from service.codecs.images import ImageBudget, ImageBusy, ImageError, ImageTooLarge, image_to_pixels
from tests.api.conftest import b64, files, png_bytes
from tests.api.photos import digit_photo
from tests.api.pngs import digit_canvas, encode_png, png_chunk


def test_mnist_digit_survives_preprocessing(digits):
    pixels = digits[0][0]
    out = image_to_pixels(png_bytes(pixels))
    assert out.shape == (784,) and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - pixels).mean() < 10  # MNIST is already cropped, 20x20-fitted and centred


def test_dark_on_light_is_inverted_and_centred():
    image = np.full((120, 90), 230, dtype=np.uint8)
    image[10:50, 60:70] = 20  # a dark bar near the top-right corner of light paper
    out = image_to_pixels(_png(image)).reshape(28, 28)
    assert out[0].max() == 0 and out[:, 0].max() == 0  # background became black
    ys, xs = np.nonzero(out)
    mass = out[ys, xs]
    assert abs((ys * mass).sum() / mass.sum() - 14) < 1 and abs((xs * mass).sum() / mass.sum() - 14) < 1
    assert ys.max() - ys.min() + 1 == 20  # the long side fills the 20x20 box


def test_blank_and_garbage_images_are_refused():
    with pytest.raises(ImageError, match="no digit found"):
        image_to_pixels(_png(np.full((50, 50), 255, dtype=np.uint8)))
    with pytest.raises(ImageError, match=r"^not a PNG or JPEG image$"):  # no object repr from Pillow
        image_to_pixels(b"this is not an image")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_sample(digits, local_models):
    """20 digits the model gets right as raw MNIST, and a synthetic pen-on-paper photo of each."""
    pixels, labels = digits
    right = np.flatnonzero(local_models[1].predict(pixels)[0] == labels)[:20]
    return [(digit_photo(pixels[i], seed=int(i)), int(labels[i])) for i in right]


def test_photos_of_pen_digits_via_b64(client, photo_sample):
    response = client.post("/v1/models/mnist:predict",
                           json={"instances": [{"b64": b64(photo)} for photo, _ in photo_sample]})
    assert response.status_code == 200, response.text
    got = [p["label"] for p in response.json["predictions"]]
    right = sum(g == label for g, (_, label) in zip(got, photo_sample, strict=True))
    assert right >= 18, f"only {right} of 20 photos classified right: {got}"


def test_multipart_upload_of_several_photos(client, photo_sample):
    sample = photo_sample[:6]
    parts = [("file", f"digit{i}.jpg", photo, "image/jpeg") for i, (photo, _) in enumerate(sample)]
    response = client.post("/v1/models/mnist:predict_image", data=files(parts))
    assert response.status_code == 200, response.text
    predictions = response.json["predictions"]
    assert [p["filename"] for p in predictions] == [f"digit{i}.jpg" for i in range(6)]
    assert sum(p["label"] == label for p, (_, label) in zip(predictions, sample, strict=True)) >= 5


def test_multipart_upload_with_a_version(client, digits):
    parts = [("file", "d.png", png_bytes(digits[0][0], invert=True, scale=3), "image/png")]
    response = client.post("/v1/models/mnist/versions/2:predict_image", data=files(parts))
    assert response.status_code == 200 and response.json["model_version"] == 2


def test_only_png_and_jpeg_are_decoded(digits):
    for fmt in ("BMP", "GIF", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(digits[0][0], dtype=np.uint8).reshape(28, 28)).save(buffer, format=fmt)
        with pytest.raises(ImageError, match=r"^not a PNG or JPEG image$"):
            image_to_pixels(buffer.getvalue())
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto 28 28 lineto stroke\n"
    with pytest.raises(ImageError, match=r"^not a PNG or JPEG image$"):  # never handed to Ghostscript
        image_to_pixels(eps)
    big = _png(np.zeros((101, 100), dtype=np.uint8))
    with pytest.raises(ImageTooLarge, match=r"image of 100x101 pixels is too large \(at most 10,000 pixels"):
        image_to_pixels(big, ImageBudget(max_pixels=10_000))


def test_image_budget_per_request(make_client, models_dir, digits):
    client = make_client(models_dir, max_images_per_request=3, max_image_pixels=10000,
                         max_image_decoded_bytes=20000)
    png = png_bytes(digits[0][0])
    predict, upload = "/v1/models/mnist:predict", "/v1/models/mnist:predict_image"
    # Pixel arrays do not count against the image budget: 2 arrays + 3 images is fine.
    mixed = [digits[0][1].tolist(), digits[0][2].tolist()] + [{"b64": b64(png)}] * 3
    assert client.post(predict, json={"instances": mixed}).status_code == 200
    response = client.post(predict, json={"instances": [*mixed, {"b64": b64(png)}]})
    assert response.status_code == 413
    assert response.json["error"].startswith("instances[5]: image 4 of 4; at most 3 images per request "
                                             "(MAX_IMAGES_PER_REQUEST)")
    big = _png(np.zeros((200, 200), dtype=np.uint8))
    response = client.post(predict, json={"instances": [{"b64": b64(png)}, {"b64": b64(big)}]})
    assert response.status_code == 413
    assert response.json["error"] == ("instances[1].b64: image of 200x200 pixels is too large "
                                      "(at most 10,000 pixels, MAX_IMAGE_PIXELS)")

    three = [("file", f"d{i}.png", png, "image/png") for i in range(3)]
    assert client.post(upload, data=files(three)).status_code == 200
    response = client.post(upload, data=files([*three, ("file", "d3.png", png, "image/png")]))
    assert response.status_code == 413 and response.json["error"].startswith("file[3]: image 4 of 4")
    response = client.post(upload, data=files([("file", "big.png", big, "image/png")]))
    assert response.status_code == 413 and response.json["error"].startswith("file[0] (big.png): image of 200x200")
    rgba = encode_png(digit_canvas(90, 4, np.uint8))  # 8,100 pixels, but 32,400 bytes decoded
    response = client.post(upload, data=files([("file", "rgba.png", rgba, "image/png")]))
    assert response.status_code == 413 and response.json["error"] == (
        "file[0] (rgba.png): image of 90x90 RGBA pixels needs 32,400 bytes decoded (at most 20,000 bytes, "
        "MAX_IMAGE_DECODED_BYTES)")
    # Far more parts than the budget: Werkzeug stops parsing at 3 + 8 parts, and says which limit.
    many = [("file", f"d{i}.png", png, "image/png") for i in range(50)]
    response = client.post(upload, data=files(many))
    assert response.status_code == 413 and "at most 3 'file' parts (MAX_IMAGES_PER_REQUEST)" in response.json["error"]


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` gray pixels (Pillow refuses it before decoding)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + png_chunk(b"IEND", b""))


def test_decoded_size_is_judged_from_the_header():
    # The issue's upload: 155 KB on the wire, 64 MiB once decoded (Pillow holds RGBA as 4 bytes).
    issue = encode_png(digit_canvas(4096, 4, np.uint16))
    with pytest.raises(ImageTooLarge) as caught:
        image_to_pixels(issue)
    assert str(caught.value) == ("image of 4096x4096 RGBA pixels needs 64.0 MiB decoded (at most 32.0 MiB, "
                                 "MAX_IMAGE_DECODED_BYTES)")
    rgba = encode_png(digit_canvas(300, 4, np.uint8))  # 360,000 bytes decoded
    with pytest.raises(ImageTooLarge, match=r"300x300 RGBA pixels needs 360,000 bytes decoded \(at most 200,000 b"):
        image_to_pixels(rgba, ImageBudget(max_decoded_bytes=200_000))
    assert image_to_pixels(rgba, ImageBudget(max_decoded_bytes=360_000)).max() == 255
    # Pillow's own decompression-bomb refusal (over 2x its 89M-pixel limit) is a 413 too, not a 422.
    with pytest.raises(ImageTooLarge, match=r"^image of 400,000,000 pixels is too large \(at most 16,777,216 "
                                            r"pixels, MAX_IMAGE_PIXELS\)$"):
        image_to_pixels(_bomb_png(20000, 20000))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_png_depth_and_colour_type_reads_the_same_digit(channels, dtype):
    # Dark bar on white paper, as 8/16-bit gray, gray+alpha, RGB, RGBA. 16-bit gray used to be
    # clipped to white by Pillow's I;16 -> L conversion ("no digit found").
    reference = image_to_pixels(encode_png(digit_canvas(600, 1, np.uint8)))
    got = image_to_pixels(encode_png(digit_canvas(600, channels, dtype)))
    assert np.abs(got - reference).max() <= 2


def test_transparent_palette_png_is_flattened_onto_white():
    ink = np.zeros((200, 200), dtype=np.uint8)  # palette index 0: transparent; 1: opaque black
    ink[40:160, 90:110] = 1
    image = Image.fromarray(ink, mode="P")
    image.putpalette([0, 0, 0, 0, 0, 0])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    got = image_to_pixels(buffer.getvalue()).reshape(28, 28)
    assert got.max() == 255 and got[0].max() == 0  # the bar is ink, the transparent paper background


def test_decode_budget_is_shared_and_bounded():
    budget = DecodeBudget(1000, wait_seconds=0.05)
    with budget.hold(800):
        with budget.hold(200):  # fits beside it
            assert budget.in_use == 1000
        with pytest.raises(ImageBusy, match=r"^server busy: other images are being decoded"), budget.hold(300):
            pass
    assert budget.in_use == 0
    with budget.hold(5000):  # larger than the whole budget: runs, alone
        assert budget.in_use == 5000
    assert (ImageError.status, ImageTooLarge.status, ImageBusy.status) == (422, 413, 503)


def test_large_and_non_images_through_the_api(client):
    predict, upload = "/v1/models/mnist:predict", "/v1/models/mnist:predict_image"
    issue = encode_png(digit_canvas(4096, 4, np.uint16))
    response = client.post(upload, data=files([("file", "scan.png", issue, "image/png")]))
    assert response.status_code == 413
    assert response.json["error"] == ("file[0] (scan.png): image of 4096x4096 RGBA pixels needs 64.0 MiB decoded "
                                      "(at most 32.0 MiB, MAX_IMAGE_DECODED_BYTES)")
    response = client.post(predict, json={"instances": [{"b64": b64(_bomb_png(20000, 20000))}]})
    assert response.status_code == 413
    assert response.json["error"] == ("instances[0].b64: image of 400,000,000 pixels is too large "
                                      "(at most 16,777,216 pixels, MAX_IMAGE_PIXELS)")
    # Not an image at all: the message says so, with no Python object repr from Pillow.
    response = client.post(upload, data=files([("file", "notes.txt", b"hello", "text/plain")]))
    assert response.status_code == 422
    assert response.json["error"] == "file[0] (notes.txt): not a PNG or JPEG image"
    response = client.post(predict, json={"instances": [{"b64": b64(b"hello")}]})
    assert response.status_code == 422 and response.json["error"] == "instances[0].b64: not a PNG or JPEG image"
    truncated = encode_png(digit_canvas(300, 4, np.uint8))[:200]
    response = client.post(upload, data=files([("file", "cut.png", truncated, "image/png")]))
    assert response.status_code == 422
    assert response.json["error"] == "file[0] (cut.png): not a readable PNG or JPEG image (image file is truncated)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_rotation_is_applied(fmt):
    # An "L" stroke, stored sideways with EXIF Orientation 6 ("rotate 90 clockwise to view"),
    # as phone cameras do: it must read like the upright image, not like the stored one.
    upright = np.full((1200, 900), 235, dtype=np.uint8)
    upright[200:1000, 300:380] = 20
    upright[920:1000, 300:650] = 20
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6

    def encode(image: Image.Image, **extra: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **extra)
        return buffer.getvalue()

    expected = image_to_pixels(encode(Image.fromarray(upright)))
    got = image_to_pixels(encode(stored, exif=exif))
    unrotated = image_to_pixels(encode(stored))
    assert np.abs(got - expected).mean() < 5 < np.abs(unrotated - expected).mean()
