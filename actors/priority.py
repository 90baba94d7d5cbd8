"""HIL-SERL's actors run at normal CPU priority: they are the job's real work, not background.

Ray starts its worker processes at niceness 15 (`RAY_worker_niceness`), so that a node's
scheduling daemons win over the workload. For HIL-SERL that is the wrong way round on a busy
machine: a robot's control loop must tick at its fps (the emulated SO-101's bus stalls into
faults, a real arm's commands arrive late), and the learner and collectors are what the job
is for. `flywheel hilserl` starts its own local cluster with `RAY_worker_niceness=0`; on a
cluster it joins (`--ray-address`, a shared test cluster) the workers are already started, so
each HIL-SERL actor (learner, collectors, recorder, the emulated robot and the arm and camera
actors) lowers its own process's niceness to 0 when it starts, where the process may (root
or `CAP_SYS_NICE`); elsewhere it keeps Ray's and says nothing (the run is then only slower).
"""

from __future__ import annotations

import os


def normal_priority() -> bool:
    """Lower the niceness of every thread of this process to 0 where it is higher and that is
    permitted (on Linux niceness is per thread, and a Ray worker has its threads before the
    actor starts; threads started later inherit it); True if they all run at normal priority."""
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    ok = True
    for tid in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) > 0:
                os.setpriority(os.PRIO_PROCESS, tid, 0)
        except (OSError, AttributeError):  # not permitted, a thread gone, or no such call
            ok = False
    return ok


def at_normal_priority(cls: type) -> type:
    """`cls` (an actor class someone else wrote) whose instances first call `normal_priority`."""

    class AtNormalPriority(cls):
        def __init__(self, *args, **kwargs):
            normal_priority()
            super().__init__(*args, **kwargs)

    AtNormalPriority.__name__ = cls.__name__
    AtNormalPriority.__qualname__ = cls.__qualname__
    AtNormalPriority.__doc__ = cls.__doc__
    return AtNormalPriority
