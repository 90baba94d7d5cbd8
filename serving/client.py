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

An `HTTPRewardClient` keeps one keep-alive connection: use one per thread. It speaks the URL's
scheme (`https://` with TLS, certificates verified; any other scheme is refused), and sends
the endpoint's token (`token=`, else the environment's FLYWHEEL_REWARD_TOKEN) as
`Authorization: Bearer`. A 401 (no or a wrong token) and an answer that is not the endpoint's
JSON raise `RewardUnavailable` at once, without retries.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import ssl
import time
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
import ray.exceptions as rex
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serving.config import APP_NAME, TOKEN_ENV
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
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        super().__init__(retries, backoff_s, deadline_s, timeout_s)
        if body not in ("json", "npy"):
            raise ValueError(f"body {body!r}: 'json' or 'npy'")
        self.url = url
        self.scheme, self.host, self.port, self.path = parse_url(url)
        self.ssl_context = ssl_context or (
            ssl.create_default_context() if self.scheme == "https" else None
        )
        self.headers = auth_headers(token)
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
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout_s, context=self.ssl_context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout_s
                )
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
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
            except ssl.SSLCertVerificationError as e:  # the same certificate next time
                raise RewardUnavailable(f"reward endpoint {self.url}: {_why(e)}") from None
            except (OSError, http.client.HTTPException) as e:
                self.statuses["connection error"] += 1
                self.wait(attempt, started, f"{type(e).__name__}: {e}")
                continue
            self.statuses[status] += 1
            if status == 200:
                return self._answer(data)
            reason = error_text(data)
            if status in (401, 403):
                raise RewardUnavailable(
                    f"reward endpoint {self.url}: HTTP {status} {reason} (its token: "
                    f"{TOKEN_ENV}, or token=)"
                )
            if status in RETRY_STATUSES:
                self.wait(attempt, started, f"HTTP {status} {reason}")
                continue
            raise RewardRequestError(f"HTTP {status}: {reason}")

    def _answer(self, data: bytes) -> dict:
        """A 200's body: the endpoint's JSON object, or RewardUnavailable naming what came."""
        try:
            answer = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            start = " ".join(data[:80].decode(errors="replace").split())
            raise RewardUnavailable(
                f"reward endpoint {self.url}: HTTP 200 but not its JSON answer ({start!r}): "
                "is this URL the reward endpoint?"
            )
        return answer

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


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http:// or https:// URL; a ValueError of one line for
    any other."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError) as e:
        raise ValueError(f"reward URL {url!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"reward URL {url!r}: http:// or https:// only")
    if not parts.hostname:
        raise ValueError(f"reward URL {url!r}: no host")
    default = 443 if scheme == "https" else 80
    return scheme, parts.hostname, port or default, parts.path or "/"


def auth_headers(token: str | None = None) -> dict[str, str]:
    """The endpoint's `Authorization` header for `token` (else the environment's TOKEN_ENV)."""
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


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
