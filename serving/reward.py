"""`flywheel serve-reward CHECKPOINT`: the reward classifier, served once for every robot.

One Ray Serve deployment, `RewardClassifier`, scores camera frames with a classifier
checkpoint (`flywheel train-classifier`). Requests from every robot that asks, over HTTP or
through a `DeploymentHandle`, are batched together with `@serve.batch` (`max_batch_size`,
`batch_wait_timeout_s`); `max_ongoing_requests` is kept at least `max_batch_size`, or a batch
could never fill. Inference runs on one thread beside the replica's event loop, so requests
keep being parsed while a batch is on the CPU or GPU.

HTTP (the proxy binds 127.0.0.1 unless `--host` is given; `--port`, default 8000):

* `POST /reward`, a JSON body `{"images": {"observation.images.front": "<base64 PNG or JPEG>",
  ...}}` (cameras by feature key or short name, `front`), or a raw uint8 `.npy` body holding
  C x H x W x 3 (the cameras in the order `GET /reward` lists; H x W x 3 for one camera).
  Answers `{"probability": p, "success": p >= threshold, "threshold": t, "model": name}`.
* `GET /reward`: the model's name, cameras, image size, threshold, batching settings and the
  sizes of the batches run so far.
* A malformed request (bad base64, a wrong camera set, a wrong size without `--resize`, a
  non-image, an empty or oversized body) answers 400 (413) with `{"error": "<one line>"}`;
  overload beyond `max_queued_requests` answers 503 (a `BackPressureError` on handles);
  `/-/healthz` is the proxy's health check.

Handle (Ray actors, e.g. HIL-SERL collectors): `serve.get_app_handle("reward").score.remote(
{camera: uint8 H x W x 3})` returns the same dict; a malformed request raises
`RewardRequestError` (a ValueError). `serving.client` wraps both with retries.

Replicas take a GPU each when the cluster has GPUs (`--gpus-per-replica`), and scale between
`--min-replicas` and `--max-replicas` with Serve's autoscaler when those are given.

Direct ingress (`--direct-port P`): every replica also answers the same HTTP API itself, on
port P (the next replica on P + 1, ...), on the same host. Through Serve's proxy a request
costs two Ray calls more than the model (the proxy forwards it to the replica, which calls the
proxy back for the body), ~7 ms on a 2-core CPU; a robot asking a replica directly skips both.
Serve's proxy on `--port` stays the entry that spreads requests over replicas. This is Ray
Serve 2.60's direct ingress (`RAY_SERVE_ENABLE_DIRECT_INGRESS=1`): serve-reward sets it when it
starts its own Ray; a cluster it joins must have been started with it (and
`RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT` = P), or `--direct-port` is a one-line error. Two of
Serve's settings there exist for a load balancer (HAProxy) in front of the replicas, and none
is in front here: the 30 s drain of a stopping replica is shortened to 2 s, and a dead
replica's port is not held back for 150 s (`RAY_SERVE_PORT_QUARANTINE_S=0`), so that its
replacement comes back on the same port and a client's retries reach it. The replicas' ports
are read from Serve's controller (`get_target_groups`, what Ray's HAProxy integration reads),
which is not public API: Ray is pinned at 2.60.

`build_app(args)` is the application builder `serving/reward.yaml` names, for `serve run` and a
KubeRay RayService's `serveConfigV2`; `flywheel serve-reward` builds the same application.
The deployment takes its model loader as a constructor argument (`loader(checkpoint) ->` an
object with `cameras`, `image_size`, `threshold`, `name` and `probabilities(N x C x S x S x 3
uint8) -> N floats`, as `pipelines.classifier.model.load_reward_model` returns).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import json
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ray import serve

from pipelines.classifier.model import camera_batch, camera_name, load_reward_model
from pipelines.runtime.cli import JobParser

APP_NAME = "reward"
ROUTE = "/reward"
DEPLOYMENT = "RewardClassifier"
MAX_BODY_BYTES = 16 * 1024 * 1024
NPY_MAGIC = b"\x93NUMPY"


class RewardRequestError(ValueError):
    """A request the classifier cannot score, in one line (HTTP 400)."""


# --------------------------------------------------------------------------- request parsing


def decode_image(data: str, key: str) -> np.ndarray:
    """A base64 PNG or JPEG (a `data:` URL too) -> H x W x 3 uint8 RGB."""
    import cv2

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


def parse_body(body: bytes, cameras: list[str]) -> dict[str, np.ndarray]:
    """A POST body (JSON with base64 images, or a raw .npy array) -> {camera: image}."""
    if not body:
        raise RewardRequestError(
            'empty body: send JSON {"images": {"<camera>": "<base64 PNG>"}} or a uint8 .npy array'
        )
    if body.startswith(NPY_MAGIC):
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


# --------------------------------------------------------------------------- the deployment


@serve.deployment(name=DEPLOYMENT)
class RewardClassifier:
    """Scores frames with a classifier; batched across callers (module docstring)."""

    def __init__(
        self,
        checkpoint: str,
        loader: Callable = load_reward_model,
        max_batch_size: int = 8,
        batch_wait_timeout_s: float = 0.002,
        resize: bool = False,
        threads: int = 1,
    ):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.model = loader(checkpoint)
        self.cameras = list(self.model.cameras)
        self.image_size = int(self.model.image_size)
        self.resize = resize
        self.score_batch.set_max_batch_size(max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
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
            frame = camera_batch(images, self.cameras, self.image_size, self.resize)
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
            "resize": self.resize,
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_s": self.batch_wait_timeout_s,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }

    async def __call__(self, request):
        from starlette.responses import JSONResponse

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


# --------------------------------------------------------------------------- the application


@dataclass
class RewardAppConfig:
    """What `build_app` takes (the `args` of serving/reward.yaml; flags of serve-reward)."""

    checkpoint: str
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.002
    max_ongoing_requests: int = 16
    max_queued_requests: int = 64
    num_replicas: int = 1
    min_replicas: int | None = None  # both given: Serve's autoscaler between them
    max_replicas: int | None = None
    target_ongoing_requests: float = 4.0
    num_cpus: float = 1.0
    num_gpus: float | str = "auto"  # "auto": 1 per replica when the cluster has GPUs
    threads: int | None = None  # torch threads per replica (default: its CPUs, at least 1)
    resize: bool = False

    @classmethod
    def from_args(cls, args: dict) -> RewardAppConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"reward app args: unknown {unknown}; known: {sorted(known)}")
        if "checkpoint" not in args:
            raise ValueError(
                "reward app args: 'checkpoint' (a classifier checkpoint folder) is required"
            )
        cfg = cls(**args)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name, low in (
            ("max_batch_size", 1),
            ("max_ongoing_requests", 1),
            ("num_replicas", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} {value!r}: an integer >= {low}")
        if not isinstance(self.max_queued_requests, int) or not (
            self.max_queued_requests == -1 or self.max_queued_requests >= 1
        ):
            raise ValueError(f"max_queued_requests {self.max_queued_requests!r}: >= 1, or -1")
        if not 0 <= float(self.batch_wait_timeout_s) <= 10:
            raise ValueError(f"batch_wait_timeout_s {self.batch_wait_timeout_s!r}: 0 to 10 s")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests {self.max_ongoing_requests} < max_batch_size "
                f"{self.max_batch_size}: a batch could never fill"
            )
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("min_replicas and max_replicas: give both (autoscaling) or neither")
        if self.min_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas}, max_replicas {self.max_replicas}: "
                "0 <= min <= max"
            )
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus {self.num_cpus}: >= 0")
        if self.num_gpus != "auto" and not float(self.num_gpus) >= 0:
            raise ValueError(f"num_gpus {self.num_gpus!r}: 'auto' or >= 0")

    def gpus(self) -> float:
        if self.num_gpus != "auto":
            return float(self.num_gpus)
        import ray

        return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def deployment_options(self) -> dict:
        options: dict = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.gpus()},
        }
        if self.min_replicas is not None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.num_replicas
        return options


def reward_app(cfg: RewardAppConfig, loader: Callable = load_reward_model):
    """The bound Serve application for `cfg` (with `loader` to load the checkpoint)."""
    cfg.validate()
    threads = cfg.threads or max(1, int(cfg.num_cpus))
    return RewardClassifier.options(**cfg.deployment_options()).bind(
        cfg.checkpoint,
        loader=loader,
        max_batch_size=cfg.max_batch_size,
        batch_wait_timeout_s=float(cfg.batch_wait_timeout_s),
        resize=bool(cfg.resize),
        threads=threads,
    )


def build_app(args: dict):
    """Serve application builder (`import_path: serving.reward:build_app`).

    The args are checked, and the checkpoint is read, before anything is deployed: a
    ValueError of one line naming what is wrong.
    """
    from pipelines.classifier.model import KIND
    from pipelines.dataset import DatasetError
    from pipelines.runtime.training import read_meta

    cfg = RewardAppConfig.from_args(dict(args))
    try:
        read_meta(cfg.checkpoint, KIND)
    except DatasetError as e:
        raise ValueError(f"reward app args: checkpoint {e}") from None
    return reward_app(cfg)


# --------------------------------------------------------------------------- the command


@dataclass
class ServeConfig:
    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = APP_NAME
    route_prefix: str = ROUTE
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.002
    max_ongoing_requests: int = 16
    max_queued_requests: int = 64
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None  # None: 1 per replica when the cluster has GPUs
    threads: int | None = None
    resize: bool = False
    direct_port: int | None = None  # each replica also answers HTTP itself from this port on
    ray_address: str | None = None

    def app_config(self) -> RewardAppConfig:
        return RewardAppConfig(
            checkpoint=self.checkpoint,
            max_batch_size=self.max_batch_size,
            batch_wait_timeout_s=self.batch_wait_timeout_s,
            max_ongoing_requests=max(self.max_ongoing_requests, self.max_batch_size),
            max_queued_requests=self.max_queued_requests,
            num_replicas=self.replicas,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            num_cpus=self.cpus_per_replica,
            num_gpus="auto" if self.gpus_per_replica is None else self.gpus_per_replica,
            threads=self.threads,
            resize=self.resize,
        )


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve_reward(cfg: ServeConfig, loader: Callable = load_reward_model):
    """Start Serve (HTTP on cfg.host:cfg.port) and deploy the classifier; returns its handle.

    Checks the checkpoint, the options and the port first: a DatasetError or ValueError of one
    line, before anything starts.
    """
    from pipelines.classifier.model import KIND
    from pipelines.runtime.cluster import connect
    from pipelines.runtime.training import read_meta

    app_cfg = cfg.app_config()
    app_cfg.validate()
    if loader is load_reward_model:
        read_meta(cfg.checkpoint, KIND)  # a one-line error for anything but a classifier
    if not 1 <= cfg.port <= 65535:
        raise ValueError(f"--port {cfg.port}: 1 to 65535")
    if cfg.direct_port is not None:
        _check_direct_port(cfg)
    connect(cfg.ray_address)
    from pipelines.runtime.cluster import quiet

    quiet()
    running = _serve_http()
    if running is None and not port_free(cfg.host, cfg.port):
        raise ValueError(f"--port {cfg.port}: {cfg.host}:{cfg.port} is already in use")
    if running is not None and running != (cfg.host, cfg.port):
        host, port = running
        raise ValueError(
            f"Serve already runs on this Ray cluster with HTTP on {host}:{port}; add the "
            f"endpoint there with --host {host} --port {port}, or stop it (serve shutdown)"
        )
    import ray

    http = {"host": cfg.host, "port": cfg.port}
    try:
        serve.start(http_options=http)
    except (ray.exceptions.RayActorError, TimeoutError):
        # its HTTP proxy did not come up in time (a busy machine): the controller is up and
        # starts another proxy, which `wait_for_http` below waits for
        serve.start(http_options=http)
    if cfg.direct_port is not None and not _direct_ingress_enabled():
        raise ValueError(
            f"--direct-port {cfg.direct_port}: Serve on this Ray cluster runs without direct "
            "ingress; start the cluster with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 and "
            f"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT={cfg.direct_port}, or leave --direct-port out"
        )
    handle = serve.run(reward_app(app_cfg, loader), name=cfg.name, route_prefix=cfg.route_prefix)
    wait_for_http(cfg.host, cfg.port)
    if cfg.direct_port is not None:
        for url in direct_urls(cfg, wait_s=180.0):
            host, _, port = url.split("/")[2].rpartition(":")
            wait_for_http(host.strip("[]"), int(port))
    return handle


def _check_direct_port(cfg: ServeConfig) -> None:
    """Check `--direct-port` before anything starts; set up direct ingress for the local Ray
    cluster this process is about to start (environment variables its processes inherit)."""
    import os

    import ray

    port = cfg.direct_port
    if not 1 <= port <= 65535 or port == cfg.port:
        raise ValueError(f"--direct-port {port}: 1 to 65535, and not --port {cfg.port}")
    if cfg.min_replicas == 0:
        raise ValueError(f"--direct-port {port}: needs a replica running (--min-replicas >= 1)")
    joins = ray.is_initialized() or cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if not joins:  # (on a cluster it joins, its replicas may hold the port already)
        if not port_free(cfg.host, port):
            raise ValueError(f"--direct-port {port}: {cfg.host}:{port} is already in use")
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(port)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(min(65535, port + 999))
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
        os.environ.setdefault("RAY_SERVE_PORT_QUARANTINE_S", "0")  # a replacement reuses P


def _direct_ingress_enabled() -> bool:
    import ray

    controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    probe = controller.__ray_call__.remote(lambda c: bool(getattr(c, "_direct_ingress_enabled", 0)))
    return bool(ray.get(probe, timeout=60))


def direct_urls(cfg: ServeConfig, wait_s: float = 0.0) -> list[str]:
    """The URLs at which the replicas of `cfg.name` answer directly (`--direct-port`), waiting
    up to `wait_s` for the replicas it starts with to have their ports; a ClusterError if none
    has."""
    import ray

    from pipelines.runtime.cluster import ClusterError

    controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    want = cfg.replicas if cfg.min_replicas is None else cfg.min_replicas
    end = time.monotonic() + wait_s
    while True:
        groups = ray.get(controller.get_target_groups.remote(cfg.name), timeout=60)
        targets = [
            t
            for g in groups
            if g.app_name == cfg.name and str(getattr(g.protocol, "value", g.protocol)) == "HTTP"
            for t in g.targets
            if t.name.startswith("SERVE_REPLICA::")
        ]
        if len(targets) >= want or time.monotonic() >= end:
            break
        time.sleep(0.2)
    if not targets:
        raise ClusterError(f"no replica of {cfg.name!r} answers directly (direct ingress is off)")
    urls = []
    for t in sorted(targets, key=lambda t: t.port):
        host = t.ip if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        host = f"[{host}]" if ":" in host else host
        urls.append(f"http://{host}:{t.port}{cfg.route_prefix}")
    return urls


def wait_for_http(host: str, port: int, deadline_s: float = 180.0) -> None:
    """Wait until Serve (its proxy, or a replica's direct port) answers `/-/healthz` on
    host:port; a ClusterError if it does not."""
    import http.client

    from pipelines.runtime.cluster import ClusterError

    address = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    end = time.monotonic() + deadline_s
    why = "no answer"
    while time.monotonic() < end:
        conn = http.client.HTTPConnection(address, port, timeout=5)
        try:
            conn.request("GET", "/-/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            why = f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as e:
            why = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        time.sleep(0.2)
    raise ClusterError(
        f"Serve's HTTP proxy on {host}:{port} is not up after {deadline_s:.0f} s ({why})"
    )


def _serve_http() -> tuple[str, int] | None:
    """(host, port) of the HTTP proxies of the Serve instance on the cluster, if one runs."""
    import ray

    try:
        controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return None
    options = ray.get(controller.get_http_config.remote(), timeout=60)
    return options.host, int(options.port)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a classifier checkpoint (flywheel train-classifier)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--min-replicas", type=int, default=None, help="autoscale from (with --max)")
    p.add_argument("--max-replicas", type=int, default=None, help="autoscale up to")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.002)
    p.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=16,
        help="per replica; raised to --max-batch-size if below it",
    )
    p.add_argument(
        "--max-queued-requests", type=int, default=64, help="beyond this, 503 (-1: unbounded)"
    )
    p.add_argument("--cpus-per-replica", type=float, default=1.0)
    p.add_argument(
        "--gpus-per-replica", type=float, default=None, help="default: 1 when the cluster has GPUs"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per replica")
    p.add_argument("--resize", action="store_true", help="accept other image sizes and resize")
    p.add_argument(
        "--direct-port",
        type=int,
        default=None,
        help="each replica also answers HTTP itself from this port on, skipping Serve's proxy "
        "(the lowest latency; Ray Serve's direct ingress)",
    )
    p.add_argument("--name", default=APP_NAME, help=f"Serve application name ({APP_NAME})")
    p.add_argument("--ray-address", default=None)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel serve-reward") -> int:
    from pipelines.dataset import DatasetError
    from pipelines.runtime.cluster import ClusterError

    args = build_parser(prog).parse_args(argv)
    cfg = ServeConfig(**vars(args))
    try:
        serve_reward(cfg)
    except (DatasetError, ClusterError, ValueError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{host}:{cfg.port}{cfg.route_prefix}"
    info = serve.get_app_handle(cfg.name).info.remote().result()
    first = info["camera_names"][0]
    print(f"Serving {info['model']} at {url} (threshold {info['threshold']:.4f})")
    print(f"  cameras {info['cameras']}, {info['image_size']}x{info['image_size']}")
    print(f"  health: http://{host}:{cfg.port}/-/healthz")
    if cfg.direct_port is not None:
        for direct in direct_urls(cfg):
            print(f"  direct (a replica, no proxy): {direct}")
    print(
        f"  curl -s {url} -H 'Content-Type: application/json' -d "
        f'"{{\\"images\\": {{\\"{first}\\": \\"$(base64 -w0 {first}.png)\\", ...}}}}"'
    )
    print("Ctrl-C stops.", flush=True)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a process manager's stop: shut down the same way
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        print("Stopped.")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m serving.reward"))
