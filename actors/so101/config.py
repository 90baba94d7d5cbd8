"""The SO-101's configs: the robot every arm-driving job shares, and `flywheel robot`'s commands.

`RobotConfig` holds the robot fields hilserl, collect and `robot teleop` share (follower and
leader serial ports, their calibration names, the calibrations folder, the cameras); its fields
are their flags (`pipelines.runtime.flags`): a job's config nests it as a `section()`.
`FollowerConfig` is the same section for a job that drives the follower only (the leader's
flags hidden).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from actors.feetech.calibration import DEFAULT_CALIBRATION_DIR
from pipelines.dataset import DatasetError
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES

CAMERA_PREFIX = "observation.images."
CALIBRATION_DIR_HELP = (
    f"the arms' calibrations, one JSON file per arm id (unset: {DEFAULT_CALIBRATION_DIR})"
)


class RobotError(DatasetError):
    """A one-line problem with the arms, cameras or options (a DatasetError, so that every job
    that drives an arm reports it as it reports its other input problems)."""


@dataclass
class RobotConfig:
    """The SO-101's ports, calibrations and cameras (their flags: `add_flags`)."""

    follower_port: str | None = flag(None, "a real arm's follower serial port")
    leader_port: str | None = flag(None, "a real arm's leader serial port")
    follower_id: str | None = flag(None, "the follower's calibration name")
    leader_id: str | None = flag(None, "the leader's calibration name")
    calibration_dir: str | None = flag(None, CALIBRATION_DIR_HELP)  # None: the default folder
    camera: list[str] = flag(
        default_factory=list,
        help="a real arm's OpenCV camera: front=0, wrist=/dev/video2 (repeatable)",
        metavar="NAME=SOURCE",
        append=True,
    )

    @property
    def calibrations(self) -> str:
        """The calibrations folder."""
        return calibrations_folder(self.calibration_dir)

    @property
    def has_ports(self) -> bool:
        return bool(self.follower_port or self.leader_port)

    def camera_sources(self) -> dict[str, int | str]:
        return camera_sources(self.camera)


@dataclass
class FollowerConfig(RobotConfig):
    """`RobotConfig` of a job that drives the follower only: the leader's flags are hidden from
    --help (still read, so that a printed config reads back)."""

    leader_port: str | None = flag(None, "a real arm's leader serial port", hidden=True)
    leader_id: str | None = flag(None, "the leader's calibration name", hidden=True)


def calibrations_folder(calibration_dir: str | None) -> str:
    return calibration_dir or str(DEFAULT_CALIBRATION_DIR)


def camera_sources(values: Iterable[str]) -> dict[str, int | str]:
    """`--camera front=0 --camera wrist=/dev/video2` -> {observation.images.front: 0, ...}."""
    specs = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or not source:
            raise RobotError(f"--camera {value!r}: expected NAME=SOURCE (e.g. front=0)")
        key = name if name.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + name
        specs[key] = int(source) if source.isdigit() else source
    return specs


# --------------------------------------------------------------------------- `flywheel robot`

SIM_TASK_HELP = "the simulated task"


@dataclass
class PingConfig(FlagConfig):
    """`flywheel robot ping`: handshake with every servo of an arm and read its joints."""

    port: str | None = flag(None, "serial port (unset: an emulated arm)")
    sim: bool = flag(False, "an emulated arm (without --port)")
    calibration_dir: str | None = flag(None, CALIBRATION_DIR_HELP)
    arm_id: str | None = flag(None, "name of the arm's calibration")


@dataclass
class CalibrateConfig(FlagConfig):
    """`flywheel robot calibrate`: record an arm's homing offsets and ranges."""

    arm_id: str = flag(help="name to save the calibration under")
    port: str | None = flag(None, "serial port (unset: an emulated arm)")
    sim: bool = flag(False, "an emulated arm (without --port)")
    leader: bool = flag(False, "(--sim) calibrate the leader")
    calibration_dir: str | None = flag(None, CALIBRATION_DIR_HELP)


@dataclass
class TeleopConfig(FlagConfig):
    """`flywheel robot teleop`: drive the follower from the leader and record episodes."""

    out: str = flag(help="LeRobot v2.1 dataset folder (created, or appended to)", positional=True)
    robot: RobotConfig = section(RobotConfig)
    fps: float = flag(30.0, "control and recording rate")
    episodes: int = flag(1, "episodes to record")
    episode_time: float = flag(30.0, "seconds per episode")
    task: str | None = flag(
        None, "what the episodes do (unset with --sim: the simulated task's text)"
    )
    max_step: float = flag(10.0, "largest follower move per tick (degrees)")
    steps_after_success: int = flag(
        0, "record N more frames after the success key (reward 1 on them)", metavar="N"
    )
    sim: bool = flag(False, "emulated arms (the default without ports)")
    sim_task: str = flag(DEFAULT_TASK, "(--sim) " + SIM_TASK_HELP, choices=TASK_NAMES)
    seed: int = flag(0, "(--sim) the simulated world's seed")
    image_size: int = flag(128, "(--sim) camera image size")
    vcodec: str | None = flag(
        None,
        "video codec: av1 (the default where PyAV has SVT-AV1, as LeRobot's), h264 or mpeg4; "
        "appending keeps the dataset's",
    )
    format: str | None = flag(  # None: V21 for a new dataset, the dataset's when appending
        None,
        "LeRobot layout of a new dataset: v2.1 (unset) or v3.0; appending keeps the dataset's",
    )
    ray_address: str | None = flag(None, "a Ray cluster to join (unset: local)")

    @property
    def emulated(self) -> bool:
        return self.sim or (self.robot.follower_port is None and self.robot.leader_port is None)


@dataclass
class EmulateConfig(FlagConfig):
    """`flywheel robot emulate`: start emulated follower and leader arms; print their ports."""

    sim_task: str = flag(DEFAULT_TASK, SIM_TASK_HELP, choices=TASK_NAMES)
    seed: int = flag(0, "the simulated world's seed")
    hand: str = flag(
        "none", "move the leader like an expert operator would", choices=["none", "expert"]
    )
