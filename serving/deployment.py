"""The Serve deployment behind `/reward`: one classifier, scoring frames from every robot.

Requests from every robot that asks, over HTTP or through a `DeploymentHandle`, are batched
together with `@serve.batch` (`max_batch_size`, `batch_wait_timeout_s`). Inference runs on
one thread beside the replica's event loop, so requests keep being parsed while a batch is on
the CPU or GPU.

* `POST /reward` (a body of `serving.request_body`) answers `{"probability": p, "success":
  p >= threshold, "threshold": t, "model": name}`; a malformed request answers 400 (413 for an
  oversized body) with `{"error": "<one line>"}`.
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
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from ray import serve
from starlette.responses import JSONResponse

from pipelines.classifier.model import camera_batch, camera_name, load_reward_model
from serving.config import DEPLOYMENT, RewardAppConfig
from serving.request_body import MAX_BODY_BYTES, RewardRequestError, parse_body


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
        except ValueError as e:
            raise RewardRequestError(str(e)) from None
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

    async def score(self, images: dict) -> dict:
        """The handle API: {camera: uint8 H x W x 3} -> the response dict."""
        return self._answer(await self.score_batch(self._frame(images)))

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
        if request.method == "GET":
            return JSONResponse(self.info())
        if request.method != "POST":
            return JSONResponse({"error": f"{request.method}: use POST (or GET)"}, status_code=405)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        try:
            frame = self._frame(parse_body(body, self.cameras))
        except RewardRequestError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(self._answer(await self.score_batch(frame)))


def reward_app(cfg: RewardAppConfig, loader: Callable = load_reward_model):
    """The bound Serve application for `cfg` (with `loader` to load the checkpoint)."""
    cfg.validate()
    return RewardDeployment.options(**cfg.deployment_options()).bind(cfg, loader)
