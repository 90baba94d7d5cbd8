"""The body of `POST /reward`, both sides of the wire: what a client encodes, what a replica
parses, and the one-line refusal (HTTP 400) of a body it cannot score.

Two bodies are accepted:

* JSON `{"images": {"observation.images.front": "<base64 PNG or JPEG>", ...}}` (cameras by
  feature key or short name, `front`; a `data:` URL too);
* a raw uint8 `.npy` array of C x H x W x 3, the cameras in the order `GET /reward` lists
  (H x W x 3 for one camera).
"""

from __future__ import annotations

import base64
import binascii
import io
import json

import cv2
import numpy as np

from pipelines.classifier.model import camera_name

MAX_BODY_BYTES = 16 * 1024 * 1024
NPY_MAGIC = b"\x93NUMPY"
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"


class RewardRequestError(ValueError):
    """A request the classifier cannot score, in one line (HTTP 400)."""


# --------------------------------------------------------------------------- the client's side


def encode_png(image: np.ndarray) -> str:
    """H x W x 3 uint8 RGB -> a base64 PNG."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ValueError("image could not be encoded as PNG")
    return base64.b64encode(png.tobytes()).decode()


def json_body(images: dict[str, np.ndarray]) -> bytes:
    """{camera: uint8 H x W x 3} -> a JSON body of base64 PNGs (any camera order)."""
    return json.dumps({"images": {k: encode_png(v) for k, v in images.items()}}).encode()


def npy_body(images: dict[str, np.ndarray], cameras: list[str]) -> bytes:
    """{camera: uint8 H x W x 3} -> a .npy body of the frames in the order of `cameras` (feature
    keys; the images may be named by short names); a RewardRequestError for a wrong set."""
    try:
        ordered = [images[c] if c in images else images[camera_name(c)] for c in cameras]
        stacked = np.stack([np.asarray(a) for a in ordered])
    except (KeyError, ValueError) as e:
        raise RewardRequestError(
            f"cameras {sorted(images)}: the model takes {cameras} ({e})"
        ) from None
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(stacked.astype(np.uint8, copy=False)))
    return buf.getvalue()


def error_text(data: bytes) -> str:
    """The one line of an error answer (`{"error": ...}`, or the start of any other body)."""
    try:
        return str(json.loads(data).get("error", "")) or data[:200].decode(errors="replace")
    except (ValueError, AttributeError):
        return " ".join(data[:200].decode(errors="replace").split())


# --------------------------------------------------------------------------- the replica's side


def decode_image(data: str, key: str) -> np.ndarray:
    """A base64 PNG or JPEG (a `data:` URL too) -> H x W x 3 uint8 RGB."""
    if not isinstance(data, str):
        raise RewardRequestError(f"images[{key!r}]: expected a base64 string")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RewardRequestError(f"images[{key!r}]: not valid base64") from None
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    if bgr is None:
        raise RewardRequestError(f"images[{key!r}]: not a PNG or JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_npy(body: bytes, cameras: list[str]) -> dict[str, np.ndarray]:
    """A raw .npy body -> {camera: image}, the cameras in their order."""
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RewardRequestError(
            f"not a readable .npy array ({' '.join(str(e).split())})"
        ) from None
    if array.dtype != np.uint8:
        raise RewardRequestError(f".npy array of {array.dtype}: expected uint8 RGB")
    if array.ndim == 3 and len(cameras) == 1:
        array = array[None]
    if array.ndim != 4 or len(array) != len(cameras) or array.shape[-1] != 3:
        raise RewardRequestError(
            f".npy array of shape {list(array.shape)}: expected {len(cameras)} x H x W x 3 "
            f"(cameras {cameras} in that order)"
        )
    return dict(zip(cameras, array, strict=True))


def parse_body(body: bytes, cameras: list[str]) -> dict[str, np.ndarray]:
    """A POST body (JSON with base64 images, or a raw .npy array) -> {camera: image}."""
    if not body:
        raise RewardRequestError(
            'empty body: send JSON {"images": {"<camera>": "<base64 PNG>"}} or a uint8 .npy array'
        )
    if body.startswith(NPY_MAGIC):
        return parse_npy(body, cameras)
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RewardRequestError("body is neither JSON nor a .npy array") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict) or not images:
        raise RewardRequestError(
            'JSON body: expected {"images": {"<camera>": "<base64 PNG>", ...}}'
        )
    return {str(k): decode_image(v, str(k)) for k, v in images.items()}
