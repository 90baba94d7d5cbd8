"""The reward endpoint's configs: the application (`RewardAppConfig`, the `args` of
serving/reward.yaml) and the command that serves it (`ServeConfig`, which holds one).

`RewardAppConfig.validate` and `ServeConfig.validate` raise a ValueError of one line naming
what is wrong; `build_app` and `serve_reward` call them before anything is deployed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, fields, replace

import ray

from pipelines.runtime.flags import FlagConfig, flag, section

APP_NAME = "reward"
ROUTE = "/reward"
DEPLOYMENT = "RewardClassifier"  # the Serve deployment's name (serve status, config overrides)
TOKEN_ENV = "FLYWHEEL_REWARD_TOKEN"  # the bearer token, for the endpoint and its clients
MIN_TOKEN_CHARS = 16


def gpu_count(text: str) -> float | str:
    """`--gpus-per-replica`: a number of GPUs, or `auto` (1 when the cluster has GPUs)."""
    return "auto" if text == "auto" else float(text)


@dataclass
class RewardAppConfig:
    """What `build_app` takes (the `args` of serving/reward.yaml; flags of serve-reward)."""

    checkpoint: str = flag(
        help="a classifier checkpoint (flywheel train-classifier)", positional=True
    )
    num_replicas: int = flag(1, "replicas (no autoscaling)", option="replicas", metavar="REPLICAS")
    # both given: Serve's autoscaler between them
    min_replicas: int | None = flag(None, "autoscale from (with --max)")
    max_replicas: int | None = flag(None, "autoscale up to")
    target_ongoing_requests: float = flag(4.0, "requests per replica the autoscaler aims at")
    max_batch_size: int = flag(8, "frames scored at once")
    batch_wait_timeout_s: float = flag(0.002, "how long a batch waits to fill")
    max_ongoing_requests: int = flag(16, "per replica; raised to --max-batch-size if below it")
    max_queued_requests: int = flag(64, "beyond this, 503 (-1: unbounded)")
    num_cpus: float = flag(1.0, "CPUs per replica", option="cpus-per-replica", metavar="CPUS")
    num_gpus: float | str = flag(
        "auto",  # "auto": 1 per replica when the cluster has GPUs
        "GPUs per replica (auto: 1 when the cluster has GPUs)",
        option="gpus-per-replica",
        metavar="GPUS",
        type=gpu_count,
    )
    threads: int | None = flag(None, "torch threads per replica; none: one per CPU")
    resize: bool = flag(False, "accept other image sizes and resize")
    token: str | None = flag(
        None,
        f"bearer token every request must send (better: the {TOKEN_ENV} environment variable, "
        "which the command line does not show)",
    )
    require_token: bool = flag(False, f"refuse to start without a token (--token or {TOKEN_ENV})")

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
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(
                f"threads {self.threads!r}: an integer >= 1 (or leave it out: one per CPU)"
            )
        token = self.resolved_token()
        if self.require_token and token is None:
            raise ValueError(
                f"require_token: no token; set {TOKEN_ENV} (e.g. to `openssl rand -hex 32`) "
                "where the application is built, or give --token"
            )
        if token is not None and (
            len(token) < MIN_TOKEN_CHARS
            or not token.isascii()
            or not token.isprintable()
            or any(c.isspace() for c in token)
        ):
            raise ValueError(
                f"token (--token or {TOKEN_ENV}): at least {MIN_TOKEN_CHARS} printable ASCII "
                "characters without spaces (e.g. `openssl rand -hex 32`)"
            )

    def resolved_token(self) -> str | None:
        """The token requests must send: `token`, else the environment's TOKEN_ENV, else None."""
        token = self.token if self.token is not None else os.environ.get(TOKEN_ENV)
        return token or None

    def with_token(self) -> RewardAppConfig:
        """This config with its token resolved here (the replicas may run elsewhere)."""
        return replace(self, token=self.resolved_token())

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
class ServeConfig(FlagConfig):
    """`flywheel serve-reward`: the application, and where and how Serve runs it."""

    app: RewardAppConfig = section(RewardAppConfig)
    host: str = flag("127.0.0.1", "HTTP address of Serve's proxy")
    port: int = flag(8000, "HTTP port of Serve's proxy")
    direct_port: int | None = flag(
        None,
        "each replica also answers HTTP itself from this port on, skipping Serve's proxy (the "
        "lowest latency; Ray Serve's direct ingress)",
    )
    name: str = flag(APP_NAME, "Serve application name")
    route_prefix: str = flag(ROUTE, "HTTP route of the endpoint")
    ray_address: str | None = flag(None, "a Ray cluster to join; none: start a local one")

    def validate(self) -> None:
        """The host and ports (the application is `app.validate`'s)."""
        check_host(self.host)
        if not 1 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: 1 to 65535")
        port = self.direct_port
        if port is None:
            return
        if not 1 <= port <= 65535 or port == self.port:
            raise ValueError(f"--direct-port {port}: 1 to 65535, and not --port {self.port}")
        if self.app.min_replicas == 0:
            raise ValueError(f"--direct-port {port}: needs a replica running (--min-replicas >= 1)")

    def warnings(self) -> list[str]:
        """What a user should know before serving: an endpoint reachable from other machines,
        and whether it asks for a token."""
        if is_loopback(self.host):
            return []
        guard = (
            "requests must send its token"
            if self.app.resolved_token()
            else f"anyone who reaches it can use it: set {TOKEN_ENV} (or --token)"
        )
        return [
            f"--host {self.host} is not loopback: other machines can reach the endpoint; {guard}"
        ]

    def url_host(self) -> str:
        """`host` as it goes in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def url(self) -> str:
        """The endpoint's URL through Serve's proxy."""
        return f"http://{self.url_host()}:{self.port}{self.route_prefix}"


def check_host(host: str) -> None:
    """A ValueError of one line unless `host` is an IP address or a name this machine resolves."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        why = " ".join(str(e).split())[:120]
        raise ValueError(
            f"--host {host!r}: not an IP address, nor a host name this machine resolves ({why})"
        ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
