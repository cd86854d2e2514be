"""The V1 JSON fast path (service.codecs.json_pixels) takes plain rows and gives exactly the general path's
values; every other body, and every body with an error, goes to the general path, whose messages
name ``instances[i][j]``.

The general path (orjson + pydantic + ``instances_to_pixels``) is the reference throughout: for
every body, either the fast path declines (None) or both give the same float32 array."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from service.codecs.instances import decode_predict_body, instances_to_pixels
from service.codecs.json_decode import parse_json, validate
from service.codecs.json_pixels import fast_pixels
from service.codecs.schemas import PredictRequest
from service.service_error import ServiceError
from tests.api.test_malformed import CASES, PREDICT

MAX = 4096


def general(raw: bytes) -> np.ndarray:
    return instances_to_pixels(validate(PredictRequest, parse_json(raw)).instances, MAX)


def assert_consistent(raw: bytes) -> np.ndarray | None:
    """The fast path declines or agrees with the general path, value for value; returns its answer."""
    fast = fast_pixels(raw, MAX)
    try:
        expected = general(raw)
    except ServiceError:
        assert fast is None, f"fast path accepted a body the general path refuses: {raw[:80]!r}"
        return None
    if fast is not None:
        assert fast.dtype == np.float32 and fast.shape == expected.shape
        assert np.array_equal(fast, expected)
    return fast


def test_real_digits_take_the_fast_path_with_identical_values(digits):
    pixels = digits[0]
    for raw in (orjson.dumps({"instances": pixels.tolist()}),  # orjson: no spaces
                json.dumps({"instances": pixels.tolist()}).encode(),  # ", " separators
                json.dumps({"instances": (pixels / 4).tolist()}, indent=2).encode(),  # decimals, newlines
                orjson.dumps({"instances": (pixels / 8).tolist()}),  # up to 3 decimals
                orjson.dumps({"instances": pixels.astype(float).tolist()})):  # "12.0"
        assert assert_consistent(raw) is not None, raw[:60]


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == PREDICT and c[4] in (400, 422)], ids=lambda c: c[0])
def test_every_malformed_body_goes_to_the_general_path(case):
    # Bodies refused for their content (400, 422): so today's messages (tests/api/test_malformed.py)
    # come from the code that wrote them.
    assert fast_pixels(case[2], MAX) is None


ROW = ",".join(["7"] * 783)


@pytest.mark.parametrize(("text", "accepted"), [
    (f"[[{ROW},255]]", True),
    (f"[[{ROW},255.0]]", True),
    (f"[[{ROW},0.5]]", True),
    (f"[[{ROW},0.125]]", True),
    (f" [ [ {ROW} , 1 ] ,\n\t[{ROW},2]\r\n] ", True),
    (f"[[{ROW},0.1234]]", False),  # 4 decimals: left to the general path
    (f"[[{ROW},256]]", False),  # out of range: the general path names it
    (f"[[{ROW},255.5]]", False),
    (f"[[{ROW},1000]]", False),
    (f"[[{ROW},01]]", False),  # not JSON
    (f"[[{ROW},1.]]", False),
    (f"[[{ROW},.5]]", False),
    (f"[[{ROW},1.2.3]]", False),
    (f"[[{ROW},1..2]]", False),
    (f"[[{ROW},1 2]]", False),
    (f"[[{ROW[:-2]} 7,1]]", False),
    (f"[[{ROW},,1]]", False),
    (f"[[{ROW},1,]]", False),
    (f"[[{ROW},1]],", False),
    (f"[[{ROW},1]][", False),
    (f"[[{ROW},1],]", False),
    (f"[[{ROW},1] [{ROW},1]]", False),
    (f"[[{ROW},1]],[{ROW},1]]", False),
    (f"[[{ROW},1],[[{ROW},1]]]", False),
    (f"[[{ROW},[1]]]", False),
    (f"[[{ROW}]]", False),  # 783 values
    (f"[[{ROW},1,2]]", False),  # 785
    (f"[[{ROW},1],[{ROW}],[{ROW},1,2]]", False),  # right total, wrong rows
    (f"[[{ROW},-0]]", False),  # valid JSON and 0, but signs are the general path's
    (f"[[{ROW},1e2]]", False),
    (f"[[{ROW},NaN]]", False),
    ("[[]]", False),
    ("[]", False),
    ("[" + ",".join(["[" + ",".join(["0"] * 28) + "]"] * 28) + "]", False),  # 28x28: general path
])
def test_shapes_and_numbers(text, accepted):
    raw = b'{"instances": ' + text.encode() + b"}"
    assert (assert_consistent(raw) is not None) is accepted


def test_envelope_variants_decline():
    row = "[" + ",".join(["1"] * 784) + "]"
    for raw in (f'{{"instances": [{row}], "signature_name": "x"}}', f'{{"signature_name": "x", "instances": [{row}]}}',
                f'{{"instances": [{row}, {{"b64": "AAAA"}}]}}', f'[{row}]', f'{{"instances": [{row}]}} x',
                f'\ufeff{{"instances": [{row}]}}', f'{{"instances": [{row}]}}\x0b'):
        assert fast_pixels(raw.encode(), MAX) is None, raw[-40:]
    assert fast_pixels(f'{{"instances": [{row},{row}]}}'.encode(), 1) is None  # over MAX_INSTANCES


def test_errors_in_big_bodies_name_the_instance_and_pixel(digits):
    pixels = digits[0].copy()
    pixels[137, 401] = 256
    with pytest.raises(ServiceError, match=r"instances\[137\]\[401\]: pixel value 256 is outside 0..255"):
        decode_predict_body(orjson.dumps({"instances": pixels.tolist()}), MAX)
    rows = pixels.tolist()
    rows[199][783] = "7"
    with pytest.raises(ServiceError, match=r"instances\[199\]\[783\]: expected a number, got string"):
        decode_predict_body(orjson.dumps({"instances": rows[:200]}), MAX)


_ODD = ["256", "01", "1.", ".5", "-1", "1e1", "999.9", "255.001", "1.2345", "0.", "00", "1.2.3"]
_SPACES = ["", "", "", " ", "\n", "\t ", "\r\n"]


def _random_body(rng: np.random.Generator, clean: bool) -> bytes:
    """1-3 rows of mostly integers, some decimals of 1-3 places, random JSON whitespace; unless
    ``clean``, also rows of the wrong length and numbers the fast path must decline."""
    rows = []
    for _ in range(int(rng.integers(1, 4))):
        count = 784 if clean else int(rng.choice([784, 784, 783, 785]))
        tokens = [str(v) for v in rng.integers(0, 256, count)]
        for i in rng.choice(count, int(rng.integers(0, 20)), replace=False):
            places = int(rng.integers(1, 4))
            tokens[i] = f"{rng.integers(0, 255)}.{str(rng.integers(0, 10 ** places)).zfill(places)}"
        if not clean:
            for i in rng.choice(count, int(rng.integers(0, 3)), replace=False):
                tokens[i] = str(rng.choice(_ODD))
        comma = "," + str(rng.choice(_SPACES))
        rows.append(str(rng.choice(_SPACES)) + "[" + comma.join(tokens) + "]" + str(rng.choice(_SPACES)))
    return ('{"instances":' + str(rng.choice(_SPACES)) + "[" + ",".join(rows) + "]}").encode()


@pytest.mark.parametrize("seed", range(40))
def test_random_bodies_agree_with_the_general_path(seed):
    rng = np.random.default_rng(seed)
    fast = assert_consistent(_random_body(rng, clean=True))
    assert fast is not None  # plain valid rows always take the fast path
    assert_consistent(_random_body(rng, clean=False))
