"""Try it: digits drawn with mouse events are explained by the real API and shown as ten bars,
the 28x28 input and a heatmap; the page's answer is the one :predict gives for the same image."""

from __future__ import annotations

import pytest
import requests

from tests.api.conftest import png_bytes
from tests.browser.conftest import PHONE

# Strokes on the 280x280 pad, as fractions of its size.
SEVEN = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.85)]]
ONE = [[(0.52, 0.15), (0.50, 0.85)]]


def _draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=15)
        page.mouse.up()


@pytest.mark.parametrize(("digit", "strokes"), [(7, SEVEN), (1, ONE)], ids=["seven", "one"])
def test_a_drawn_digit_is_explained(open_page, console_stack, digit, strokes):
    watched = open_page("/")
    page = watched.page
    _draw(page, strokes)
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#answer").inner_text() == f"It is a {digit}"
    assert page.locator("#bars li").count() == 10
    assert page.locator("#bars li.top").get_attribute("data-digit") == str(digit)
    top, track = (page.locator(f"#bars li.top {part}").bounding_box()["width"] for part in (".fill", ".track"))
    assert top > 0.3 * track  # drawn, not only written
    assert page.locator("#answered-by").inner_text() == "answered by mnist version 1"
    assert page.locator("#top3").inner_text().startswith(f"Top 3: {digit} (")
    for image in ("#seen", "#heatmap"):  # 28x28 images decoded by the browser
        assert page.evaluate(f"document.querySelector('{image}').naturalWidth") == 28
    # The heatmap is not blank: the explanation puts colour on some pixels and not on others.
    distinct = page.evaluate("""(() => {
        const img = document.querySelector('#heatmap'), c = document.createElement('canvas');
        c.width = c.height = 28; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return new Set(Array.from(g.getImageData(0, 0, 28, 28).data)).size; })()""")
    assert distinct > 10
    # Anyone's :predict of the same drawing answers the same digit.
    b64 = page.evaluate("document.getElementById('pad').toDataURL('image/png').split(',')[1]")
    predicted = requests.post(console_stack.url + "/v1/models/mnist:predict", json={"instances": [{"b64": b64}]},
                              timeout=10).json()["predictions"][0]
    assert predicted["label"] == digit
    shown = [float(text.rstrip("%")) for text in page.locator("#bars .p").all_inner_texts()]
    assert all(abs(bar - p * 100) <= 0.051 for bar, p in zip(shown, predicted["probabilities"], strict=True))
    watched.screenshot(f"try-{digit}")
    watched.assert_clean()


def test_clear_and_an_undrawn_pad_say_so(open_page, console_stack):
    watched = open_page("/")
    page = watched.page
    page.click("#predict")
    assert page.locator("#try-error").inner_text() == "draw a digit first"
    watched.assert_clean()


def test_an_uploaded_photo_is_explained(open_page, console_stack, mnist, tmp_path):
    # A scan-like photo: dark ink on light paper, 4x the size; the API's preprocessing undoes both.
    index = next(i for i in range(100) if mnist.y[i] == 3)
    photo = tmp_path / "three.png"
    photo.write_bytes(png_bytes(mnist.X[index], invert=True, scale=4))
    watched = open_page("/")
    page = watched.page
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#answer").inner_text() == "It is a 3"
    assert page.locator("#bars li").count() == 10
    watched.assert_clean()


IN_VIEW = """(() => { const box = document.getElementById('answer').getBoundingClientRect();
    return box.top >= 0 && box.bottom <= window.innerHeight; })()"""


def test_on_a_phone_the_answer_is_scrolled_into_view(open_page, console_stack):
    watched = open_page("/", PHONE)
    page = watched.page
    _draw(page, SEVEN)
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    page.wait_for_function(IN_VIEW, timeout=5_000)  # after the smooth scroll
    assert page.evaluate("window.scrollY") > 0
    # At 390 x 844 the result card is below the pad: unscrolled, the answer ends under the fold.
    assert page.evaluate("""(() => { const box = document.getElementById('answer').getBoundingClientRect();
        return box.bottom + window.scrollY > window.innerHeight; })()""")
    assert page.locator("#answer").inner_text() == "It is a 7"
    watched.screenshot("try-phone-answer")
    watched.assert_clean()


def test_on_a_desktop_the_answer_is_in_view_and_nothing_moves(open_page, console_stack):
    watched = open_page("/")
    page = watched.page
    _draw(page, SEVEN)
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    page.wait_for_timeout(600)  # as long as a smooth scroll would take
    assert page.evaluate(IN_VIEW) and page.evaluate("window.scrollY") == 0
    watched.assert_clean()
