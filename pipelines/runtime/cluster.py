"""Connecting a job to Ray: a local cluster by default, an existing one by address.

Every job also runs as `ray job submit --working-dir . -- python -m pipelines.<job> ...`. Ray
then starts the job's driver in a temporary copy of the working directory (deleted with the
job's runtime environment), with RAY_ADDRESS set and the job's runtime environment in
RAY_JOB_CONFIG_JSON_ENV_VAR; `connect` then joins that cluster as it is, and
`check_job_output` refuses an output (dataset written in place, checkpoints, MLflow store) that
would land in the temporary copy, before the job does any work.
"""

from __future__ import annotations

import importlib
import json
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
    # The driver of a `ray job submit` job runs in the job's runtime environment already: Ray
    # sets RAY_JOB_CONFIG_JSON_ENV_VAR for it (not RAY_JOB_ID), so nothing is shipped again.
    in_job = os.environ.get("RAY_JOB_ID") or os.environ.get(_JOB_CONFIG_VAR)
    if address and not in_job:
        root = Path(__file__).resolve().parents[2]  # the repository
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
    """The Ray cluster cannot be reached, or a job's output would be lost; worded as one line."""


# Set by Ray's job supervisor in the environment of a submitted job's driver.
_JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_scratch_dir() -> Path | None:
    """The temporary working directory of a `ray job submit` job's driver, else None.

    That is the job's current directory when its runtime environment has a `working_dir`
    (`--working-dir`), except a `local://` one, which is a directory of the node's own.
    """
    raw = os.environ.get(_JOB_CONFIG_VAR)
    if not raw:
        return None
    try:
        working_dir = (json.loads(raw).get("runtime_env") or {}).get("working_dir")
    except (ValueError, AttributeError):
        return None
    if not working_dir or str(working_dir).startswith("local://"):
        return None
    return Path.cwd().resolve()


def in_job_scratch(path: str | os.PathLike) -> Path | None:
    """The job's temporary working directory if `path` is inside it (see job_scratch_dir)."""
    scratch = job_scratch_dir()
    if scratch is None or "://" in str(path):
        return None
    resolved = Path(path).resolve()
    return scratch if resolved == scratch or scratch in resolved.parents else None


def check_job_output(path: str | os.PathLike | None, what: str) -> None:
    """A ClusterError when `path`, an output of the job, cannot be written where it is (under a
    regular file, or in /proc or /sys) or is in the job's temporary directory; None: no output."""
    if path is None or "://" in str(path):
        return
    resolved = Path(path).expanduser().resolve()
    for virtual in (Path("/proc"), Path("/sys")):
        if resolved == virtual or virtual in resolved.parents:
            raise ClusterError(
                f"{what} {path}: inside {virtual}, a virtual file system; give a folder on a disk"
            )
    above = next((p for p in resolved.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ClusterError(f"{what} {path}: {above} is a file, not a folder")
    scratch = in_job_scratch(path)
    if scratch is not None:
        raise ClusterError(
            f"{what} {path}: inside this `ray job submit` job's temporary working directory "
            f"({scratch}), which Ray deletes after the job; give an absolute path outside it "
            "(on a shared volume for a multi-node cluster)"
        )


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
