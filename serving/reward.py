"""`flywheel serve-reward CHECKPOINT`: the reward classifier, served once for every robot.

One Ray Serve deployment (`serving.deployment`, named `RewardClassifier`) scores camera frames
with a classifier checkpoint (`flywheel train-classifier`). Requests from every robot that
asks, over HTTP or through a `DeploymentHandle`, are batched together with `@serve.batch`
(`max_batch_size`, `batch_wait_timeout_s`); `max_ongoing_requests` is kept at least
`max_batch_size`, or a batch could never fill.

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
`--direct-port P`: every replica also answers the same HTTP API itself, on port P (the next
replica on P + 1, ...), skipping Serve's proxy (Ray Serve's direct ingress; `serving.driver`).

`build_app(args)` is the application builder `serving/reward.yaml` names, for `serve run` and a
KubeRay RayService's `serveConfigV2`; `flywheel serve-reward` builds the same application.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from ray import serve

from pipelines.dataset import DatasetError
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError
from pipelines.runtime.flags import config_from_flags
from serving.config import APP_NAME, ROUTE, RewardAppConfig, ServeConfig, gpu_count
from serving.deployment import reward_app
from serving.driver import check_checkpoint, direct_urls, serve_reward


def build_app(args: dict):
    """Serve application builder (`import_path: serving.reward:build_app`).

    The args are checked, and the checkpoint is read, before anything is deployed: a
    ValueError of one line naming what is wrong.
    """
    cfg = RewardAppConfig.from_args(dict(args))
    try:
        check_checkpoint(cfg.checkpoint)
    except DatasetError as e:
        raise ValueError(f"reward app args: checkpoint {e}") from None
    return reward_app(cfg)


# --------------------------------------------------------------------------- the command


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a classifier checkpoint (flywheel train-classifier)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address of Serve's proxy")
    p.add_argument("--port", type=int, default=8000, help="HTTP port of Serve's proxy")
    p.add_argument(
        "--replicas",
        dest="num_replicas",
        metavar="REPLICAS",
        type=int,
        default=1,
        help="replicas (no autoscaling)",
    )
    p.add_argument("--min-replicas", type=int, default=None, help="autoscale from (with --max)")
    p.add_argument("--max-replicas", type=int, default=None, help="autoscale up to")
    p.add_argument(
        "--target-ongoing-requests",
        type=float,
        default=4.0,
        help="requests per replica the autoscaler aims at",
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="frames scored at once")
    p.add_argument(
        "--batch-wait-timeout-s", type=float, default=0.002, help="how long a batch waits to fill"
    )
    p.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=16,
        help="per replica; raised to --max-batch-size if below it",
    )
    p.add_argument(
        "--max-queued-requests", type=int, default=64, help="beyond this, 503 (-1: unbounded)"
    )
    p.add_argument(
        "--cpus-per-replica",
        dest="num_cpus",
        metavar="CPUS",
        type=float,
        default=1.0,
        help="CPUs per replica",
    )
    p.add_argument(
        "--gpus-per-replica",
        dest="num_gpus",
        metavar="GPUS",
        type=gpu_count,
        default="auto",
        help="GPUs per replica (auto: 1 when the cluster has GPUs)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per replica; none: one per CPU"
    )
    p.add_argument("--resize", action="store_true", help="accept other image sizes and resize")
    p.add_argument(
        "--direct-port",
        type=int,
        default=None,
        help="each replica also answers HTTP itself from this port on, skipping Serve's proxy "
        "(the lowest latency; Ray Serve's direct ingress)",
    )
    p.add_argument("--name", default=APP_NAME, help="Serve application name")
    p.add_argument("--route-prefix", default=ROUTE, help="HTTP route of the endpoint")
    p.add_argument(
        "--ray-address", default=None, help="a Ray cluster to join; none: start a local one"
    )
    return p


def report(cfg: ServeConfig) -> None:
    """What a user needs to call the endpoint (its URLs, cameras, a curl line)."""
    url = cfg.url()
    info = serve.get_app_handle(cfg.name).info.remote().result()
    first = info["camera_names"][0]
    print(f"Serving {info['model']} at {url} (threshold {info['threshold']:.4f})")
    print(f"  cameras {info['cameras']}, {info['image_size']}x{info['image_size']}")
    print(f"  health: http://{cfg.url_host()}:{cfg.port}/-/healthz")
    if cfg.direct_port is not None:
        for direct in direct_urls(cfg):
            print(f"  direct (a replica, no proxy): {direct}")
    print(
        f"  curl -s {url} -H 'Content-Type: application/json' -d "
        f'"{{\\"images\\": {{\\"{first}\\": \\"$(base64 -w0 {first}.png)\\", ...}}}}"'
    )


def serve_until_stopped() -> None:
    """Block until Ctrl-C or SIGTERM, then shut Serve down."""
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


def parse_flags(ns: argparse.Namespace) -> ServeConfig:
    return config_from_flags(ServeConfig, ns)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel serve-reward") -> int:
    cfg = build_parser(prog).parse_config(argv, parse_flags)
    try:
        serve_reward(cfg)
    except (DatasetError, ClusterError, ValueError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    report(cfg)
    serve_until_stopped()
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m serving.reward"))
