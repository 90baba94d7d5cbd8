"""`open_so101`: one SO-101 workcell built once, emulated or real, here or as Ray actors.

A follower (and a leader), the cameras and, for the emulated workcell, the `EmulatedSO101` they
are connected to, as an `SO101Arms`. Emulated: servo emulators on pseudo-terminals behind the
real Feetech driver, the follower coupled to a simulator and the cameras rendering it, the arms
on the known emulated calibration (or a saved one, when an arm id is given). Real: the serial
ports, the arms' calibrations (LeRobot's files, or `flywheel robot calibrate`'s:
`arm_calibration`), OpenCV cameras. `remote=True` runs every part as a Ray actor (the arms
restarted by Ray, re-handshaking, if their process dies); otherwise they are plain objects in
this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.arm import FollowerArm, LeaderArm
from actors.camera import OpenCVCamera, RobotCamera
from actors.emulated_robot import EMULATED_CALIBRATION, REPLY_TIMEOUT_MS, EmulatedSO101
from actors.so101.config import RobotConfig, RobotError
from pipelines.dataset import DatasetError
from pipelines.dataset.calibration import find_calibration_file, read_calibration_file, searched
from pipelines.simulator.tasks import CAMERAS as EMULATED_CAMERAS

# an emulated bus stalls when the machine is busy (its servos are threads, maybe in another
# process), which a real one does not: a longer reply timeout and more retries before a fault
EMULATED_BUS = {"timeout_ms": REPLY_TIMEOUT_MS, "retries": 20}
ARM_RESTARTS = 3  # a Ray arm actor whose process died is restarted (and re-handshakes)


def arm_calibration(arm_id: str, directory: str | None, role: str = "follower"):
    """The calibration of the `role` ("follower" / "leader") arm `arm_id`: `<directory>/<id>.json`,
    or without a directory LeRobot's file, then Flywheel's former folder
    (`pipelines.dataset.calibration`); a one-line RobotError when there is none or it is bad."""
    try:
        path = find_calibration_file(role, arm_id, directory)
        if path is None:
            looked, leader = searched(role, arm_id, directory), " --leader" * (role == "leader")
            missing = (
                f"{looked}: no calibration for arm {arm_id!r} ({role})"
                if directory is not None
                else f"no calibration for arm {arm_id!r} ({role}; looked for {looked})"
            )
            raise RobotError(
                f"{missing}; run `flywheel robot calibrate --arm-id {arm_id}{leader} --port ...` "
                "or LeRobot's lerobot-calibrate first"
            )
        return read_calibration_file(path)
    except RobotError:
        raise
    except DatasetError as e:
        raise RobotError(str(e)) from None


def calibration_of(
    arm_id: str | None, directory: str | None, emulated: bool, role: str = "follower"
):
    """An arm's calibration: the saved one of `arm_id` (`arm_calibration`), or the emulated
    arms' known one."""
    if emulated and arm_id is None:
        return EMULATED_CALIBRATION
    if arm_id is None:
        raise RobotError("--follower-id/--leader-id (or --arm-id): which calibration to use")
    return arm_calibration(arm_id, directory, role)


def bus_options(emulated: bool) -> dict:
    """Bus settings of an arm (`EMULATED_BUS` for the emulated ones, the driver's otherwise)."""
    return dict(EMULATED_BUS) if emulated else {}


@dataclass
class SO101Arms:
    """What `open_so101` opened: plain objects, or Ray actor handles when `remote`."""

    follower: Any
    leader: Any | None
    cameras: dict[str, Any]  # key -> an OpenCVCamera / RobotCamera (`latest()`)
    robot: Any | None = None  # the EmulatedSO101 (None: a real arm)
    remote: bool = False
    ports: dict[str, str | None] = field(default_factory=dict)  # follower, leader
    _parts: list = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Torque off and close everything, best effort (shutting down: nothing more to say)."""
        parts, self._parts = self._parts, []
        for part in reversed(parts):
            stop = part.shutdown if hasattr(part, "shutdown") else part.close
            with contextlib.suppress(Exception):
                if self.remote:
                    import ray

                    ray.get(stop.remote(), timeout=10)
                else:
                    stop()


def open_so101(
    config: RobotConfig,
    *,
    emulated: bool,
    task: str = "reach_grasp",
    seed: int = 0,
    image_size: int = 128,
    hand: str | None = None,
    leader: bool = True,
    cameras: Iterable[str] = EMULATED_CAMERAS,
    max_step: float = 10.0,
    bus: dict | None = None,
    remote: bool = False,
    wrap: Callable[[type], type] = lambda cls: cls,
    actor_options: dict | None = None,
) -> SO101Arms:
    """The workcell (module docstring): the follower, the leader (`leader`), the cameras.

    Emulated: an `EmulatedSO101` (`task`, `seed`, `image_size`, `hand`: "expert" moves its
    leader like an operator), its cameras `cameras`. Real: `config`'s ports, calibrations and
    `--camera` sources. `bus`: the arms' bus settings (default `bus_options(emulated)`).
    `remote`: Ray actors, each class first passed through `wrap` and started with
    `actor_options`. Whatever was opened is closed again if a later part fails."""
    import ray

    options = actor_options or {}

    def start(cls: type, *args, restarts: bool = False, **kwargs):
        if not remote:
            return cls(*args, **kwargs)
        more = {"max_restarts": ARM_RESTARTS, "max_task_retries": ARM_RESTARTS} if restarts else {}
        return ray.remote(wrap(cls)).options(**more, **options).remote(*args, **kwargs)

    arms = SO101Arms(None, None, {}, remote=remote)
    try:
        if emulated:
            robot = start(EmulatedSO101, task=task, seed=seed, image_size=image_size, hand=hand)
            arms.robot = robot
            arms._parts.append(robot)
            ports = ray.get(robot.ports.remote()) if remote else robot.ports()
            follower_port, leader_port = ports["follower"], ports["leader"]
            arms.ports = dict(ports)
            sources = {key: robot for key in cameras}
        else:
            follower_port, leader_port = config.follower_port, config.leader_port
            if not follower_port or (leader and not leader_port):
                wanted = "--follower-port and --leader-port" if leader else "--follower-port"
                raise RobotError(f"a real arm needs {wanted}")
            arms.ports = {"follower": follower_port, "leader": leader_port}
            sources = config.camera_sources()
        settings = bus_options(emulated) if bus is None else bus
        follower_cal = calibration_of(config.follower_id, config.calibrations, emulated)
        leader_cal = (
            calibration_of(config.leader_id, config.calibrations, emulated, "leader")
            if leader
            else None
        )
        arms.follower = start(
            FollowerArm,
            follower_port,
            follower_cal,
            restarts=True,
            max_step=max_step,
            **settings,
        )
        arms._parts.append(arms.follower)
        if leader:
            arms.leader = start(LeaderArm, leader_port, leader_cal, restarts=True, **settings)
            arms._parts.append(arms.leader)
        for key, source in sources.items():
            cam = start(RobotCamera, source, key) if emulated else start(OpenCVCamera, source)
            arms.cameras[key] = cam
            arms._parts.append(cam)
    except BaseException:
        arms.close()
        raise
    return arms
