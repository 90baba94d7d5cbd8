"""The Serve deployment behind `/reward`: one classifier, scoring frames from every robot.

Requests from every robot that asks, over HTTP or through a `DeploymentHandle`, are batched
together with `@serve.batch` (`max_batch_size`, `batch_wait_timeout_s`). Inference runs on
one thread beside the replica's event loop, so requests keep being parsed while a batch is on
the CPU or GPU.

* `POST /reward` (a body of `serving.request_body`) answers `{"probability": p, "success":
  p >= threshold, "threshold": t, "model": name}`; a malformed request answers 400 (413 for an
  oversized body, stopped as it streams in) with `{"error": "<one line>"}`. Bodies are parsed
  and decoded on parser threads, never on the event loop.
* With a token (`config.token`), every request without `Authorization: Bearer <token>`
  answers 401 before its body is read, `GET` included.
* `GET /reward`: the model's name, cameras, image size, threshold, batching settings and the
  sizes of the batches run so far.
* Handle: `score.remote({camera: uint8 H x W x 3})` returns the same dict; a malformed request
  raises `RewardRequestError` (a ValueError).

The deployment takes its config and its model loader as constructor arguments (`loader(
checkpoint) ->` an object with `cameras`, `image_size`, `threshold`, `name` and
`probabilities(N x C x S x S x 3 uint8) -> N floats`, as `load_reward_model` returns).
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from ray import serve
from starlette.responses import JSONResponse

from pipelines.classifier.model import camera_batch, camera_name, load_reward_model
from serving.config import DEPLOYMENT, RewardAppConfig
from serving.request_body import MAX_BODY_BYTES, RewardRequestError, parse_body, read_limited

PARSERS = 2  # threads per replica decoding bodies beside its event loop


@serve.deployment(name=DEPLOYMENT)
class RewardDeployment:
    """Scores frames with a classifier; batched across callers (module docstring)."""

    def __init__(self, config: RewardAppConfig, loader: Callable = load_reward_model):
        torch.set_num_threads(config.torch_threads())
        self.config = config
        self.model = loader(config.checkpoint)
        self.cameras = list(self.model.cameras)
        self.image_size = int(self.model.image_size)
        self.score_batch.set_max_batch_size(config.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(float(config.batch_wait_timeout_s))
        self.batch_sizes: Counter = Counter()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._parsers = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="parse")
        self._token = (config.token or "").encode()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def score_batch(self, frames: list[np.ndarray]) -> list[float]:
        self.batch_sizes[len(frames)] += 1
        loop = asyncio.get_running_loop()
        probs = await loop.run_in_executor(
            self._executor, self.model.probabilities, np.concatenate(frames)
        )
        return [float(p) for p in probs]

    def _frame(self, images: dict) -> np.ndarray:
        try:
            frame = camera_batch(images, self.cameras, self.image_size, bool(self.config.resize))
        except (ValueError, cv2.error) as e:
            raise RewardRequestError(" ".join(str(e).split())[:300]) from None
        if len(frame) != 1:
            raise RewardRequestError(f"{len(frame)} frames per camera: send one frame per request")
        return frame

    def _answer(self, probability: float) -> dict:
        threshold = self.model.threshold
        return {
            "probability": probability,
            "success": bool(probability >= threshold),
            "threshold": threshold,
            "model": self.model.name,
        }

    def _parse(self, body: bytes) -> np.ndarray:
        images = parse_body(body, self.cameras, self.image_size, bool(self.config.resize))
        return self._frame(images)

    async def _off_loop(self, fn: Callable, arg):
        """`fn(arg)` on a parser thread: decoding never holds up the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._parsers, fn, arg)

    def _authorized(self, request) -> bool:
        """No token configured, or `Authorization: Bearer <token>` (compared in constant time)."""
        if not self._token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(errors="replace"), self._token
        )

    async def score(self, images: dict) -> dict:
        """The handle API: {camera: uint8 H x W x 3} -> the response dict."""
        return self._answer(await self.score_batch(await self._off_loop(self._frame, images)))

    def info(self) -> dict:
        return {
            "model": self.model.name,
            "cameras": self.cameras,
            "camera_names": [camera_name(c) for c in self.cameras],
            "image_size": self.image_size,
            "threshold": self.model.threshold,
            "resize": bool(self.config.resize),
            "max_batch_size": self.config.max_batch_size,
            "batch_wait_timeout_s": float(self.config.batch_wait_timeout_s),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }

    async def __call__(self, request):
        if not self._authorized(request):  # before anything is read or told
            return JSONResponse(
                {"error": "unauthorized: send the endpoint's token (Authorization: Bearer ...)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method == "GET":
            return JSONResponse(self.info())
        if request.method != "POST":
            return JSONResponse({"error": f"{request.method}: use POST (or GET)"}, status_code=405)
        too_big = JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return too_big
        body = await read_limited(request.stream(), MAX_BODY_BYTES)  # chunked: no length
        if body is None:
            return too_big
        try:
            frame = await self._off_loop(self._parse, body)
        except RewardRequestError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(self._answer(await self.score_batch(frame)))


def reward_app(cfg: RewardAppConfig, loader: Callable = load_reward_model):
    """The bound Serve application for `cfg` (with `loader` to load the checkpoint); its token
    (`--token`, or FLYWHEEL_REWARD_TOKEN here) resolved before the replicas start."""
    cfg = cfg.with_token()
    cfg.validate()
    return RewardDeployment.options(**cfg.deployment_options()).bind(cfg, loader)
