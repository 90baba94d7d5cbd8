"""serving/request_body.py: the POST body, encoded and parsed without a server."""

import io
import json

import numpy as np
import pytest

from serving.request_body import (
    RewardRequestError,
    error_text,
    json_body,
    npy_body,
    parse_body,
)

CAMS = ["observation.images.front", "observation.images.wrist"]


def test_bodies_parse_without_a_server():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    buf = io.BytesIO()
    np.save(buf, frames)
    parsed = parse_body(buf.getvalue(), CAMS)
    assert list(parsed) == CAMS and parsed[CAMS[1]].shape == (8, 8, 3)


def test_what_a_client_encodes_a_replica_parses_back():
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for c in CAMS}
    short = {"wrist": images[CAMS[1]], "front": images[CAMS[0]]}  # any order, short names
    from_npy = parse_body(npy_body(short, CAMS), CAMS)
    from_json = parse_body(json_body(images), CAMS)
    for parsed in (from_npy, from_json):  # PNG is lossless
        assert list(parsed) == CAMS
        for c in CAMS:
            np.testing.assert_array_equal(parsed[c], images[c])
    with pytest.raises(RewardRequestError, match="the model takes"):
        npy_body({"front": images[CAMS[0]]}, CAMS)


def test_error_answers_read_as_one_line():
    assert error_text(json.dumps({"error": "bad camera"}).encode()) == "bad camera"
    assert error_text(b"<html>\n  Bad\n Gateway</html>") == "<html> Bad Gateway</html>"
