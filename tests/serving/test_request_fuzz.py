"""A property test of the request parser (`parse_body`): whatever the body, a result or a
`RewardRequestError` (a 400), never another exception, within a memory bound.

Bounded for CI: FLYWHEEL_FUZZ_EXAMPLES examples per property (default 150); a longer run:
`FLYWHEEL_FUZZ_EXAMPLES=20000 pytest tests/serving/test_request_fuzz.py`.
"""

import base64
import io
import json
import os
import resource

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.request_body import RewardRequestError, parse_body
from tests.serving.test_hardening import png_declaring

CAMS = ["observation.images.front", "observation.images.wrist"]
EXAMPLES = int(os.environ.get("FLYWHEEL_FUZZ_EXAMPLES", "150"))
RSS_BOUND_MB = 256  # peak RSS growth of one example (one 2048 x 2048 image: 12 MB)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check(body: bytes, size: int, resize: bool) -> None:
    """A result or a one-line 400, and the process's peak memory raised by less than the bound
    (the high-water mark of this process: what earlier tests raised it to is not counted)."""
    start = _peak_mb()
    try:
        parsed = parse_body(body, CAMS, size, resize)
    except RewardRequestError as e:
        assert "\n" not in str(e)
    else:
        assert sorted(parsed) == sorted(CAMS)
        for image in parsed.values():
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert _peak_mb() - start < RSS_BOUND_MB


def _png(width: int, height: int, real: bool) -> bytes:
    if not real:
        return png_declaring(width, height)
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (9, 99, 199)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, "JPEG")
    return buf.getvalue()


sides = st.sampled_from([0, 1, 8, 64, 65, 2048, 2049, 8192, 100000, 2**31 - 1])
real_sides = st.sampled_from([1, 8, 16, 64])
names = st.sampled_from(["front", "wrist", "observation.images.front", "top", "", "front "])
mutate = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8)


@st.composite
def images(draw) -> bytes:
    kind = draw(st.sampled_from(["bomb", "png", "jpeg", "bytes"]))
    if kind == "bomb":
        raw = _png(draw(sides), draw(sides), real=False)
    elif kind == "png":
        raw = _png(draw(real_sides), draw(real_sides), real=True)
    elif kind == "jpeg":
        raw = _jpeg(draw(real_sides), draw(real_sides))
    else:
        raw = draw(st.binary(max_size=200))
    raw = bytearray(raw)
    for at, value in draw(mutate):  # flipped bytes: headers, chunk lengths, CRCs
        if raw:
            raw[at % len(raw)] = value
    return bytes(raw)


@st.composite
def json_bodies(draw) -> bytes:
    cams = draw(st.lists(names, min_size=0, max_size=3, unique=True))
    encoded = {c: base64.b64encode(draw(images())).decode() for c in cams}
    doc = draw(
        st.sampled_from(
            [
                {"images": encoded},
                {"images": list(encoded.values())},
                encoded,
                [encoded],
                {"images": {c: 3 for c in cams}},
            ]
        )
    )
    body = json.dumps(doc).encode()
    cut = draw(st.integers(0, len(body)))
    return body if draw(st.booleans()) else body[:cut]


@st.composite
def npy_bodies(draw) -> bytes:
    shape = tuple(draw(st.lists(draw(st.just(sides)) | st.integers(-2, 4), max_size=5)))
    dtype = draw(st.sampled_from(["|u1", "<f4", "|b1", "<i8", "|O", "|V3", "garbage"]))
    header = repr({"descr": dtype, "fortran_order": draw(st.booleans()), "shape": shape})
    header = header.encode() if draw(st.booleans()) else draw(st.binary(max_size=60))
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"]))
    length = (
        len(header).to_bytes(2, "little")
        if version != b"\x02\x00"
        else len(header).to_bytes(4, "little")
    )
    data = draw(st.binary(max_size=4096))
    return b"\x93NUMPY" + version + length + header + data


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([8, 64]), st.booleans())
def test_any_bytes(body, size, resize):
    _check(body, size, resize)


@FUZZ
@given(json_bodies(), st.sampled_from([8, 64]), st.booleans())
def test_json_bodies(body, size, resize):
    _check(body, size, resize)


@FUZZ
@given(npy_bodies(), st.sampled_from([8, 64]), st.booleans())
def test_npy_bodies(body, size, resize):
    _check(body, size, resize)


@FUZZ
@given(st.integers(1, 3), st.integers(1, 64), st.integers(1, 64), st.booleans())
def test_valid_npy_bodies_parse(cameras, height, width, resize):
    buf = io.BytesIO()
    np.save(buf, np.zeros((cameras, height, width, 3), np.uint8))
    _check(buf.getvalue(), 64, resize)
