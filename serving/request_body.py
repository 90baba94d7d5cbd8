"""The body of `POST /reward`, both sides of the wire: what a client encodes, what a replica
parses, and the one-line refusal (HTTP 400) of a body it cannot score.

Two bodies are accepted:

* JSON `{"images": {"observation.images.front": "<base64 PNG or JPEG>", ...}}` (cameras by
  feature key or short name, `front`; a `data:` URL too);
* a raw uint8 `.npy` array of C x H x W x 3, the cameras in the order `GET /reward` lists
  (H x W x 3 for one camera).

A replica checks a body before it decodes or allocates anything from it: its size as it
streams in (`read_limited`, 16 MiB), the camera names, and every image's size from its header
(the PNG/JPEG header, the `.npy` header): an image must have the model's size, or with
`--resize` at most `max_side` pixels a side. Decoding is Pillow's, of what the header declared.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import AsyncIterator

import cv2
import numpy as np
from PIL import Image, ImageOps

from pipelines.classifier.model import CAMERA_PREFIX, camera_name

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

# An image's sides may be far from the model's only with `--resize`, and never past this many
# pixels a side (nor the model's size times MAX_SCALE, for models over 512 pixels): a PNG of a
# few KB can declare 8192 x 8192 (200 MB decoded), so sizes are read from the header first.
MAX_SIDE = 2048
MAX_SCALE = 4
# A JSON body holds one object of base64 strings: a few brackets. Far more is refused before
# parsing (deep nesting, or millions of tiny objects, 20 times the body's size in memory).
MAX_JSON_BRACKETS = 256
ORIENTATION = 0x0112  # the EXIF tag


def max_side(image_size: int | None) -> int:
    """The largest side an image may have with `--resize` for a model of `image_size`."""
    return max(MAX_SIDE, MAX_SCALE * int(image_size or 0))


def check_size(key: str, width: int, height: int, image_size: int | None, resize: bool) -> None:
    """A RewardRequestError for an image of width x height the model cannot take (from the
    header, before anything is decoded)."""
    if width < 1 or height < 1:
        raise RewardRequestError(f"{key}: {width}x{height}, an empty image")
    if image_size is None:
        limit = max_side(None)
    elif not resize:
        if (width, height) != (image_size, image_size):
            raise RewardRequestError(
                f"{key}: {width}x{height}, the model takes {image_size}x{image_size} "
                "(resize it, or serve with --resize)"
            )
        return
    else:
        limit = max_side(image_size)
    if width > limit or height > limit:
        raise RewardRequestError(
            f"{key}: {width}x{height}, far above the model's "
            f"{image_size or '?'}x{image_size or '?'} (at most {limit} pixels a side)"
        )


def match_cameras(names, cameras: list[str]) -> dict[str, str]:
    """{name as sent: the model's camera} for camera names (feature keys or short names); a
    RewardRequestError for an unknown, repeated or missing camera (before any image is read)."""
    given: dict[str, str] = {}
    sent = sorted(map(str, names))
    for name in names:
        full = name if name in cameras else CAMERA_PREFIX + str(name)
        if full not in cameras or full in given.values():
            raise RewardRequestError(
                f"cameras {sent[:8]}: the model takes {cameras} "
                f"(or {[camera_name(c) for c in cameras]})"
            )
        given[name] = full
    missing = [c for c in cameras if c not in given.values()]
    if missing:
        raise RewardRequestError(f"cameras {sent}: missing {missing}")
    return given


def _pixels(image: Image.Image) -> np.ndarray:
    """A loaded PNG or JPEG image -> H x W x 3 uint8 RGB (16-bit grey scaled to 8 bits)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def decode_image(
    data: str, key: str, image_size: int | None = None, resize: bool = False
) -> np.ndarray:
    """A base64 PNG or JPEG (a `data:` URL too) -> H x W x 3 uint8 RGB. Its size is read from
    its header and checked (`check_size`) before it is decoded."""
    if not isinstance(data, str):
        raise RewardRequestError(f"images[{key!r}]: expected a base64 string")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RewardRequestError(f"images[{key!r}]: not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG")) as image:
            check_size(key, *image.size, image_size, resize)  # the header only: nothing decoded
            if image.format == "JPEG" and image.getexif().get(ORIENTATION, 1) != 1:
                return _pixels(ImageOps.exif_transpose(image))  # as OpenCV turns it
            return _pixels(image)
    except RewardRequestError:
        raise
    except Exception as e:  # a hostile file can make a decoder raise anything: a 400
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise RewardRequestError(f"images[{key!r}]: not a PNG or JPEG image ({why})") from None


def _npy_header(body: bytes) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, offset of the data) from a .npy header, nothing else read."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} (1.0 or 2.0 only)")
    except Exception as e:  # the header is a Python literal from the network: anything goes
        why = " ".join(str(e).split())[:160] or type(e).__name__
        raise RewardRequestError(f"not a readable .npy array ({why})") from None
    return tuple(shape), bool(fortran), dtype, stream.tell()


def parse_npy(
    body: bytes, cameras: list[str], image_size: int | None = None, resize: bool = False
) -> dict[str, np.ndarray]:
    """A raw .npy body -> {camera: image}, the cameras in their order. Its header (dtype, shape,
    sizes) is checked before anything is allocated; the images are views of `body`."""
    shape, fortran, dtype, offset = _npy_header(body)
    if dtype != np.uint8:
        raise RewardRequestError(f".npy array of {dtype}: expected uint8 RGB")
    if len(shape) == 3 and len(cameras) == 1:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != len(cameras) or shape[-1] != 3:
        raise RewardRequestError(
            f".npy array of shape {list(shape)[:8]}: expected {len(cameras)} x H x W x 3 "
            f"(cameras {cameras} in that order)"
        )
    for camera in cameras:
        check_size(camera, shape[2], shape[1], image_size, resize)
    count = shape[0] * shape[1] * shape[2] * shape[3]
    if len(body) - offset < count:
        raise RewardRequestError(
            f".npy array of shape {list(shape)}: {len(body) - offset} bytes of data, "
            f"{count} expected (truncated)"
        )
    array = np.frombuffer(body, np.uint8, count=count, offset=offset)
    array = array.reshape(shape, order="F" if fortran else "C")
    return dict(zip(cameras, array, strict=True))


def parse_body(
    body: bytes, cameras: list[str], image_size: int | None = None, resize: bool = False
) -> dict[str, np.ndarray]:
    """A POST body (JSON with base64 images, or a raw .npy array) -> {camera: image}, keyed by
    the model's cameras; a RewardRequestError (HTTP 400) for anything else.

    The camera names are checked first, and every image's size from its header
    (`check_size`: the model's size, or with `resize` at most `max_side`), before anything is
    decoded or allocated. CPU-bound: a replica runs it off its event loop.
    """
    if not body:
        raise RewardRequestError(
            'empty body: send JSON {"images": {"<camera>": "<base64 PNG>"}} or a uint8 .npy array'
        )
    if body.startswith(NPY_MAGIC):
        return parse_npy(body, cameras, image_size, resize)
    if body.count(b"{") + body.count(b"[") > MAX_JSON_BRACKETS:
        raise RewardRequestError(
            f"JSON body: over {MAX_JSON_BRACKETS} brackets (nested too deep, or too many "
            'objects); expected {"images": {"<camera>": "<base64 PNG>", ...}}'
        )
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RewardRequestError("body is neither JSON nor a .npy array") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict) or not images:
        raise RewardRequestError(
            'JSON body: expected {"images": {"<camera>": "<base64 PNG>", ...}}'
        )
    named = match_cameras(list(images), cameras)
    return {named[k]: decode_image(v, str(k), image_size, resize) for k, v in images.items()}


async def read_limited(chunks: AsyncIterator[bytes], limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The body from its chunks (a chunked upload has no Content-Length), or None as soon as it
    passes `limit` bytes: the rest is never read."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)
