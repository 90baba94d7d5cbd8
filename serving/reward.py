"""`flywheel serve-reward CHECKPOINT`: the reward classifier, served once for every robot.

One Ray Serve deployment (`serving.deployment`, named `RewardClassifier`) scores camera frames
with a classifier checkpoint (`flywheel train-classifier`). Requests from every robot that
asks, over HTTP or through a `DeploymentHandle`, are batched together with `@serve.batch`
(`max_batch_size`, `batch_wait_timeout_s`); `max_ongoing_requests` is kept at least
`max_batch_size`, or a batch could never fill.

HTTP (the proxy binds 127.0.0.1 unless `--host` is given, with a warning for any address other
machines reach; `--port`, default 8000). With a token (`--token`, or better the environment's
FLYWHEEL_REWARD_TOKEN), every request must send `Authorization: Bearer <token>` or is answered
401 before its body is read, `GET` included:

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

import signal
import sys
import time
from collections.abc import Sequence

from ray import serve

from pipelines.dataset import DatasetError
from pipelines.runtime.cli import JobParser, job_parser, run_job
from serving.config import RewardAppConfig, ServeConfig
from serving.deployment import reward_app
from serving.driver import check_checkpoint, direct_urls, serve_reward


def build_app(args: dict):
    """Serve application builder (`import_path: serving.reward:build_app`).

    The args are checked, and the checkpoint is read, before anything is deployed: a
    ValueError of one line naming what is wrong. With `require_token: true` (the shipped
    config), FLYWHEEL_REWARD_TOKEN must be set where the application is built.
    """
    cfg = RewardAppConfig.from_args(dict(args))
    try:
        check_checkpoint(cfg.checkpoint)
    except DatasetError as e:
        raise ValueError(f"reward app args: checkpoint {e}") from None
    return reward_app(cfg)


# --------------------------------------------------------------------------- the command


def build_parser(prog: str) -> JobParser:
    return job_parser(prog, __doc__, ServeConfig)


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


def main(argv: Sequence[str] | None = None, prog: str = "flywheel serve-reward") -> int:
    cfg = build_parser(prog).parse_config(argv, ServeConfig.from_flags)
    for warning in cfg.warnings():
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    if run_job(serve_reward, cfg, prog, errors=(ValueError,)) is None:
        return 2
    report(cfg)
    serve_until_stopped()
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m serving.reward"))
