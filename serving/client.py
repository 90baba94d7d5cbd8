"""Clients of the reward endpoint (`serving.reward`), over HTTP or a Serve handle, with retries.

    client = HTTPRewardClient("http://127.0.0.1:8000/reward")
    client.score({"observation.images.front": front, "observation.images.wrist": wrist})
    # -> {"probability": 0.98, "success": True, "threshold": 0.41, "model": "..."}

    client = HandleRewardClient()          # inside a Ray actor: serve.get_app_handle("reward")
    client.score(images)                   # or: await client.score_async(images)

Both retry what a healthy endpoint can answer next time: HTTP 500/502/503/504 and dropped
connections (a replica that died mid-request, overload), `BackPressureError` and dead or
unavailable replicas on handles; up to `retries` times, waiting `backoff_s` doubled each time
(with jitter, so that robots turned away together do not come back together), and never past
`deadline_s` in all. A request the endpoint refuses (HTTP 400, `RewardRequestError`) is not
retried: it raises `RewardRequestError` at once. When the retries run out, `RewardUnavailable`
names the last failure. Every attempt has a timeout (`timeout_s`), so no call hangs.

`retried` counts the retries a client made, `statuses` the HTTP statuses it saw.

An `HTTPRewardClient` keeps one keep-alive connection: use one per thread.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import time
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
import ray.exceptions as rex
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serving.config import APP_NAME
from serving.request_body import (
    JSON_TYPE,
    NPY_TYPE,
    RewardRequestError,
    error_text,
    json_body,
    npy_body,
)

RETRY_STATUSES = (500, 502, 503, 504)


class RewardUnavailable(RuntimeError):
    """The endpoint did not answer successfully within the retries."""


class _Retrying:
    def __init__(self, retries: int, backoff_s: float, deadline_s: float, timeout_s: float):
        self.retries = retries
        self.backoff_s = backoff_s
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self.retried = 0

    def pause(self, attempt: int, started: float, why: str) -> float:
        """How long to wait before retry `attempt` (1, 2, ...); RewardUnavailable if none."""
        left = self.deadline_s - (time.monotonic() - started)
        pause = self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        if attempt > self.retries or pause >= left:
            raise RewardUnavailable(f"reward endpoint: {why} (after {attempt - 1} retries)")
        self.retried += 1
        return pause

    def wait(self, attempt: int, started: float, why: str) -> None:
        time.sleep(self.pause(attempt, started, why))


class HTTPRewardClient(_Retrying):
    """POST /reward with retries (module docstring). `body="json"` sends base64 PNGs (any
    camera order); `body="npy"` sends one uint8 array in the order of `cameras` (default: the
    order `GET /reward` lists, asked once)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000/reward",
        *,
        retries: int = 5,
        backoff_s: float = 0.05,
        deadline_s: float = 10.0,
        timeout_s: float = 5.0,
        body: str = "json",
        cameras: list[str] | None = None,
    ):
        super().__init__(retries, backoff_s, deadline_s, timeout_s)
        if body not in ("json", "npy"):
            raise ValueError(f"body {body!r}: 'json' or 'npy'")
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.body = body
        self.cameras = cameras
        self.statuses: Counter = Counter()
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, body: bytes | None, content_type: str) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            self._conn.request(method, self.path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.getheader("connection", "").lower() == "close":
            self.close()
        return response.status, data

    def _call(self, method: str, body: bytes | None = None, content_type: str = "") -> dict:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                status, data = self._request(method, body, content_type)
            except (OSError, http.client.HTTPException) as e:
                self.statuses["connection error"] += 1
                self.wait(attempt, started, f"{type(e).__name__}: {e}")
                continue
            self.statuses[status] += 1
            if status == 200:
                return json.loads(data)
            reason = error_text(data)
            if status in RETRY_STATUSES:
                self.wait(attempt, started, f"HTTP {status} {reason}")
                continue
            raise RewardRequestError(f"HTTP {status}: {reason}")

    def info(self) -> dict:
        """GET /reward: the model's name, cameras, image size, threshold, batching."""
        return self._call("GET")

    def encode(self, images: dict[str, np.ndarray]) -> tuple[bytes, str]:
        """(request body, content type) for one frame of every camera."""
        if self.body == "npy":
            if self.cameras is None:
                self.cameras = self.info()["cameras"]
            return npy_body(images, self.cameras), NPY_TYPE
        return json_body(images), JSON_TYPE

    def score(self, images: dict[str, np.ndarray]) -> dict:
        """{camera: uint8 H x W x 3} -> {"probability", "success", "threshold", "model"}."""
        body, content_type = self.encode(images)
        return self._call("POST", body, content_type)


def _refused(e: Exception) -> Exception:
    """A refused request as a RewardRequestError of one line (Ray wraps it with a traceback);
    any other error as it is."""
    if isinstance(e, RewardRequestError):
        return RewardRequestError(str(getattr(e, "cause", None) or e).splitlines()[0])
    return e


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _retriable(e: BaseException) -> bool:
    """Whether a handle call that raised `e` may succeed when tried again."""
    if isinstance(e, RewardRequestError):
        return False
    return isinstance(
        e,
        BackPressureError
        | DeploymentUnavailableError
        | rex.RayActorError
        | rex.ActorUnavailableError
        | rex.GetTimeoutError
        | rex.TaskCancelledError
        | TimeoutError,
    )


class HandleRewardClient(_Retrying):
    """`score` through a Serve DeploymentHandle, with retries (module docstring)."""

    def __init__(
        self,
        handle=None,
        *,
        app_name: str = APP_NAME,
        retries: int = 5,
        backoff_s: float = 0.05,
        deadline_s: float = 10.0,
        timeout_s: float = 5.0,
    ):
        super().__init__(retries, backoff_s, deadline_s, timeout_s)
        self.handle = serve.get_app_handle(app_name) if handle is None else handle

    def score(self, images: dict[str, np.ndarray]) -> dict:
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return self.handle.score.remote(images).result(timeout_s=self.timeout_s)
            except Exception as e:
                if not _retriable(e):
                    raise _refused(e) from None
                self.wait(attempt, started, _why(e))

    async def score_async(self, images: dict[str, np.ndarray]) -> dict:
        """`score` for async callers (async Ray actors): awaits instead of blocking."""
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return await asyncio.wait_for(self.handle.score.remote(images), self.timeout_s)
            except Exception as e:
                if not _retriable(e):
                    raise _refused(e) from None
                await asyncio.sleep(self.pause(attempt, started, _why(e)))
