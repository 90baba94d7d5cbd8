"""How many trials run at once: what the cluster holds of what one trial needs (pure)."""

from __future__ import annotations

import os

from pipelines.runtime.cluster import ClusterError


def concurrency(
    have: dict[str, float], need: dict[str, float], trials: int, asked: int | None = None
) -> int:
    """How many trials run at once: what the cluster holds of `need`, at most `trials`.

    `asked` (--max-concurrent-trials) overrides the cluster's count (an autoscaling cluster);
    a cluster that cannot hold one trial is a ClusterError unless
    FLYWHEEL_WAIT_FOR_RESOURCES=1.
    """
    if asked is not None:
        return max(1, min(asked, trials))
    fits = trials
    for resource, amount in need.items():
        if amount <= 0:
            continue
        fits = min(fits, int(have.get(resource, 0.0) / amount + 1e-9))
    if fits < 1:
        if os.environ.get("FLYWHEEL_WAIT_FOR_RESOURCES") == "1":
            return 1
        shown = ", ".join(f"{v:g} {k}" for k, v in need.items())
        cluster = ", ".join(f"{have.get(k, 0):g} {k}" for k in need)
        raise ClusterError(
            f"one trial needs {shown}, the cluster has {cluster} (fewer --workers or "
            "--cpus-per-worker; an autoscaling cluster: FLYWHEEL_WAIT_FOR_RESOURCES=1)"
        )
    return max(1, fits)
