"""Connecting a job to Ray: a local cluster by default, an existing one by address."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import NoReturn

_PACKAGES = ("pipelines", "actors", "serving")
_started_local = False


def connect(address: str | None = None, *, num_cpus: int | None = None, data: bool = False) -> dict:
    """Start or join a Ray cluster; returns its resources. `data`: the job uses Ray Data.

    `address` (or RAY_ADDRESS) joins an existing cluster, shipping Flywheel's packages to it
    with the job's runtime environment; otherwise a local cluster is started on this machine.
    Inside a job started with `ray job submit` the job's own cluster and environment are used.
    A cluster started with `ray start --head` enforces token authentication: run the client
    with RAY_AUTH_MODE=token (it then reads ~/.ray/auth_token).
    """
    import ray

    quiet()
    if ray.is_initialized():
        if data:
            quiet_data()
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address and not os.environ.get("RAY_JOB_ID"):
        root = Path(__file__).resolve().parent.parent
        kwargs["runtime_env"] = {
            "py_modules": [str(root / p) for p in _PACKAGES if (root / p).is_dir()]
        }
    global _started_local
    if data:  # Ray Data takes a second or two to import: do it while the cluster starts.
        importing = threading.Thread(target=importlib.import_module, args=("ray.data",))
        importing.start()
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as e:
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {_why(e)}") from e
    else:
        # "local": a new cluster here, even if `ray start` left one running on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        _started_local = True
    if data:
        importing.join()
        quiet_data()
    return ray.cluster_resources()


class ClusterError(Exception):
    """The Ray cluster cannot be reached; worded as one line."""


def _why(e: BaseException) -> str:
    chain, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(x) for x in chain)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return (
            "authentication token missing or wrong; a cluster started with `ray start --head` "
            "enforces token auth: run with RAY_AUTH_MODE=token (the token is read from "
            "~/.ray/auth_token)"
        )
    return " ".join(str(chain[-1]).split())[:300]


def quiet() -> None:
    """Keep Ray's start-up chatter off the job's output (Ray's own log files keep it all)."""
    for name in ("ray", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")


def quiet_data() -> None:
    """No progress bars or per-dataset INFO lines from Ray Data on the console."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


def require(resource: str, needed: float, asked: str) -> None:
    """A ClusterError when the cluster has less of `resource` than a job asks for.

    Ray would otherwise wait for the resources forever. On an autoscaling cluster that adds
    (GPU) nodes on demand, FLYWHEEL_WAIT_FOR_RESOURCES=1 lets the job wait for them.
    """
    import ray

    have = ray.cluster_resources().get(resource, 0.0)
    if needed > have + 1e-9 and os.environ.get("FLYWHEEL_WAIT_FOR_RESOURCES") != "1":
        raise ClusterError(
            f"{asked}: needs {needed:g} {resource}, the cluster has {have:g} (an autoscaling "
            "cluster that adds nodes on demand: set FLYWHEEL_WAIT_FOR_RESOURCES=1 to wait)"
        )


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def exit_process(code: int) -> NoReturn:
    """End a command-line process.

    A local cluster this process started shares its fate (Ray kills its processes when the
    driver exits), so the process ends without `ray.shutdown()`'s graceful wait of 1-2 s.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if _started_local:
        os._exit(code)
    sys.exit(code)
