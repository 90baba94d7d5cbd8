"""Starting the reward endpoint: `serve_reward(ServeConfig)` checks the checkpoint, options and
ports, connects to (or starts) Ray, starts Serve's HTTP proxy and deploys the application.

Direct ingress (`direct_port`): every replica also answers the same HTTP API itself, on port
P (the next replica on P + 1, ...), on the same host. Through Serve's proxy a request costs two
Ray calls more than the model (the proxy forwards it to the replica, which calls the proxy back
for the body), ~7 ms on a 2-core CPU; a robot asking a replica directly skips both. Serve's
proxy on `port` stays the entry that spreads requests over replicas. This is Ray Serve 2.60's
direct ingress (`RAY_SERVE_ENABLE_DIRECT_INGRESS=1`): serve_reward sets it when it starts its
own Ray; a cluster it joins must have been started with it (and
`RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT` = P), or `direct_port` is a one-line error. Two of
Serve's settings there exist for a load balancer (HAProxy) in front of the replicas, and none
is in front here: the 30 s drain of a stopping replica is shortened to 2 s, and a dead
replica's port is not held back for 150 s (`RAY_SERVE_PORT_QUARANTINE_S=0`), so that its
replacement comes back on the same port and a client's retries reach it. The replicas' ports
are read from Serve's controller (`get_target_groups`, what Ray's HAProxy integration reads),
which is not public API: Ray is pinned at 2.60.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import ray
from ray import serve

from pipelines.classifier.model import KIND, load_reward_model
from pipelines.dataset import DatasetError
from pipelines.runtime.checkpoints import CHECKPOINT_STATE, read_meta
from pipelines.runtime.cluster import ClusterError, connect, quiet
from serving.config import ServeConfig
from serving.deployment import reward_app

CONTROLLER = "SERVE_CONTROLLER_ACTOR"


def check_checkpoint(path: str) -> None:
    """A one-line DatasetError for anything but a classifier checkpoint whose state loads (a
    corrupt or truncated `state.pt` is found here, not in a replica that fails again and
    again)."""
    read_meta(path, KIND)
    import torch

    state = Path(path) / CHECKPOINT_STATE
    try:
        torch.load(state, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch reports a damaged file in many ways
        why = " ".join(str(e).split())[:160] or type(e).__name__
        raise DatasetError(f"{state}: unreadable, the checkpoint is damaged ({why})") from None


def serve_reward(cfg: ServeConfig, loader: Callable = load_reward_model):
    """Start Serve (HTTP on cfg.host:cfg.port) and deploy the classifier; returns its handle.

    Checks the checkpoint, the options and the port first: a DatasetError or ValueError of one
    line, before anything starts. `max_ongoing_requests` is raised to `max_batch_size` if below
    it (a batch could never fill).
    """
    app = dataclasses.replace(
        cfg.app, max_ongoing_requests=max(cfg.app.max_ongoing_requests, cfg.app.max_batch_size)
    )
    app.validate()
    if loader is load_reward_model:
        check_checkpoint(app.checkpoint)
    cfg.validate()
    if cfg.direct_port is not None:
        prepare_direct_ingress(cfg)
    connect(cfg.ray_address)
    quiet()
    running = serve_http()
    if running is None and not port_free(cfg.host, cfg.port):
        raise ValueError(f"--port {cfg.port}: {cfg.host}:{cfg.port} is already in use")
    if running is not None and running != (cfg.host, cfg.port):
        host, port = running
        raise ValueError(
            f"Serve already runs on this Ray cluster with HTTP on {host}:{port}; add the "
            f"endpoint there with --host {host} --port {port}, or stop it (serve shutdown)"
        )
    http_options = {"host": cfg.host, "port": cfg.port}
    try:
        serve.start(http_options=http_options)
    except (ray.exceptions.RayActorError, TimeoutError):
        # its HTTP proxy did not come up in time (a busy machine): the controller is up and
        # starts another proxy, which `wait_for_http` below waits for
        serve.start(http_options=http_options)
    if cfg.direct_port is not None and not direct_ingress_enabled():
        raise ValueError(
            f"--direct-port {cfg.direct_port}: Serve on this Ray cluster runs without direct "
            "ingress; start the cluster with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 and "
            f"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT={cfg.direct_port}, or leave --direct-port out"
        )
    handle = serve.run(reward_app(app, loader), name=cfg.name, route_prefix=cfg.route_prefix)
    wait_for_http(cfg.host, cfg.port)
    if cfg.direct_port is not None:
        for url in direct_urls(cfg, wait_s=180.0):
            host, _, port = url.split("/")[2].rpartition(":")
            wait_for_http(host.strip("[]"), int(port))
    return handle


def port_free(host: str, port: int) -> bool:
    """Whether host:port can be bound; a ValueError of one line when the host cannot be bound
    at all (not an address of this machine), which is not a port in use."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            why = e.strerror or " ".join(str(e).split())
            raise ValueError(f"--host {host}: cannot listen on {host}:{port} ({why})") from None
    return True


def prepare_direct_ingress(cfg: ServeConfig) -> None:
    """Set up direct ingress for the local Ray cluster this process is about to start
    (environment variables its processes inherit), its port checked first."""
    port = cfg.direct_port
    joins = ray.is_initialized() or cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if joins:  # (on a cluster it joins, its replicas may hold the port already)
        return
    if not port_free(cfg.host, port):
        raise ValueError(f"--direct-port {port}: {cfg.host}:{port} is already in use")
    os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(port)
    os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(min(65535, port + 999))
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
    os.environ.setdefault("RAY_SERVE_PORT_QUARANTINE_S", "0")  # a replacement reuses P


def direct_ingress_enabled() -> bool:
    controller = ray.get_actor(CONTROLLER, namespace="serve")
    probe = controller.__ray_call__.remote(lambda c: bool(getattr(c, "_direct_ingress_enabled", 0)))
    return bool(ray.get(probe, timeout=60))


def direct_urls(cfg: ServeConfig, wait_s: float = 0.0) -> list[str]:
    """The URLs at which the replicas of `cfg.name` answer directly (`direct_port`), waiting
    up to `wait_s` for the replicas it starts with to have their ports; a ClusterError if none
    has."""
    controller = ray.get_actor(CONTROLLER, namespace="serve")
    want = cfg.app.starting_replicas()
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


def serve_http() -> tuple[str, int] | None:
    """(host, port) of the HTTP proxies of the Serve instance on the cluster, if one runs."""
    try:
        controller = ray.get_actor(CONTROLLER, namespace="serve")
    except ValueError:
        return None
    options = ray.get(controller.get_http_config.remote(), timeout=60)
    return options.host, int(options.port)
