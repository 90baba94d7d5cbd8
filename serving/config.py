"""The reward endpoint's configs: the application (`RewardAppConfig`, the `args` of
serving/reward.yaml) and the command that serves it (`ServeConfig`, which holds one).

`RewardAppConfig.validate` and `ServeConfig.validate` raise a ValueError of one line naming
what is wrong; `build_app` and `serve_reward` call them before anything is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import ray

APP_NAME = "reward"
ROUTE = "/reward"
DEPLOYMENT = "RewardClassifier"  # the Serve deployment's name (serve status, config overrides)


def gpu_count(text: str) -> float | str:
    """`--gpus-per-replica`: a number of GPUs, or `auto` (1 when the cluster has GPUs)."""
    return "auto" if text == "auto" else float(text)


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
        known = {f.name for f in fields(cls)}
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
        return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def torch_threads(self) -> int:
        return max(1, int(self.threads or self.num_cpus))

    def starting_replicas(self) -> int:
        """The replicas the application starts with."""
        return self.num_replicas if self.min_replicas is None else self.min_replicas

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


@dataclass
class ServeConfig:
    """`flywheel serve-reward`: the application, and where and how Serve runs it."""

    app: RewardAppConfig
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = APP_NAME  # the Serve application's name
    route_prefix: str = ROUTE
    direct_port: int | None = None  # each replica also answers HTTP itself from this port on
    ray_address: str | None = None

    def validate(self) -> None:
        """The ports (the application is `app.validate`'s)."""
        if not 1 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: 1 to 65535")
        port = self.direct_port
        if port is None:
            return
        if not 1 <= port <= 65535 or port == self.port:
            raise ValueError(f"--direct-port {port}: 1 to 65535, and not --port {self.port}")
        if self.app.min_replicas == 0:
            raise ValueError(f"--direct-port {port}: needs a replica running (--min-replicas >= 1)")

    def url_host(self) -> str:
        """`host` as it goes in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def url(self) -> str:
        """The endpoint's URL through Serve's proxy."""
        return f"http://{self.url_host()}:{self.port}{self.route_prefix}"
