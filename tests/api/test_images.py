"""Image inputs: MNIST-style preprocessing, photos of pen digits, multipart uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from service.images import ImageError, ImageTooLarge, image_to_pixels
from tests.api.conftest import b64, png_bytes
from tests.api.photos import digit_photo


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
    with pytest.raises(ImageError, match="not a readable PNG or JPEG"):
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


def test_photos_of_pen_digits_via_b64(api, photo_sample):
    response = requests.post(f"{api.url}/v1/models/mnist:predict", timeout=60,
                             json={"instances": [{"b64": b64(photo)} for photo, _ in photo_sample]})
    assert response.status_code == 200, response.text
    got = [p["label"] for p in response.json()["predictions"]]
    right = sum(g == label for g, (_, label) in zip(got, photo_sample, strict=True))
    assert right >= 18, f"only {right} of 20 photos classified right: {got}"


def test_multipart_upload_of_several_photos(api, photo_sample):
    sample = photo_sample[:6]
    files = [("file", (f"digit{i}.jpg", photo, "image/jpeg")) for i, (photo, _) in enumerate(sample)]
    response = requests.post(f"{api.url}/v1/models/mnist:predict_image", files=files, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["filename"] for p in predictions] == [f"digit{i}.jpg" for i in range(6)]
    assert sum(p["label"] == label for p, (_, label) in zip(predictions, sample, strict=True)) >= 5


def test_multipart_upload_with_a_version(api, digits):
    files = {"file": ("d.png", png_bytes(digits[0][0], invert=True, scale=3), "image/png")}
    response = requests.post(f"{api.url}/v1/models/mnist/versions/2:predict_image", files=files, timeout=30)
    assert response.status_code == 200 and response.json()["model_version"] == 2


def test_only_png_and_jpeg_are_decoded(digits):
    for fmt in ("BMP", "GIF", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(digits[0][0], dtype=np.uint8).reshape(28, 28)).save(buffer, format=fmt)
        with pytest.raises(ImageError, match="not a readable PNG or JPEG"):
            image_to_pixels(buffer.getvalue())
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto 28 28 lineto stroke\n"
    with pytest.raises(ImageError, match="not a readable PNG or JPEG"):  # never handed to Ghostscript
        image_to_pixels(eps)
    big = _png(np.zeros((101, 100), dtype=np.uint8))
    with pytest.raises(ImageTooLarge, match=r"image of 100x101 pixels is too large \(at most 10,000 pixels"):
        image_to_pixels(big, max_pixels=10_000)


def test_image_budget_per_request(start_api, models_dir, digits):
    server = start_api(models_dir, workers=1, MAX_IMAGES_PER_REQUEST="3", MAX_IMAGE_PIXELS="10000")
    png = png_bytes(digits[0][0])
    predict, upload = f"{server.url}/v1/models/mnist:predict", f"{server.url}/v1/models/mnist:predict_image"
    # Pixel arrays do not count against the image budget: 2 arrays + 3 images is fine.
    mixed = [digits[0][1].tolist(), digits[0][2].tolist()] + [{"b64": b64(png)}] * 3
    assert requests.post(predict, json={"instances": mixed}, timeout=30).status_code == 200
    response = requests.post(predict, json={"instances": [*mixed, {"b64": b64(png)}]}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"].startswith("instances[5]: image 4 of 4; at most 3 images per request "
                                               "(MAX_IMAGES_PER_REQUEST)")
    big = _png(np.zeros((200, 200), dtype=np.uint8))
    response = requests.post(predict, json={"instances": [{"b64": b64(png)}, {"b64": b64(big)}]}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"] == ("instances[1].b64: image of 200x200 pixels is too large "
                                        "(at most 10,000 pixels, MAX_IMAGE_PIXELS)")

    files = [("file", (f"d{i}.png", png, "image/png")) for i in range(3)]
    assert requests.post(upload, files=files, timeout=30).status_code == 200
    response = requests.post(upload, files=[*files, ("file", ("d3.png", png, "image/png"))], timeout=30)
    assert response.status_code == 413 and response.json()["error"].startswith("file[3]: image 4 of 4")
    response = requests.post(upload, files=[("file", ("big.png", big, "image/png"))], timeout=30)
    assert response.status_code == 413 and response.json()["error"].startswith("file[0] (big.png): image of 200x200")
    # Far more parts than the budget: Werkzeug stops parsing at 3 + 8 parts, and says which limit.
    many = [("file", (f"d{i}.png", png, "image/png")) for i in range(50)]
    response = requests.post(upload, files=many, timeout=30)
    assert response.status_code == 413 and "at most 3 'file' parts (MAX_IMAGES_PER_REQUEST)" in response.json()["error"]
