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

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES

CAMERA_PREFIX = "observation.images."
CALIBRATION_DIR_HELP = (
    "a folder of calibrations, <DIR>/<arm id>.json (unset: LeRobot's folders, "
    "~/.cache/huggingface/lerobot/calibration/{robots,teleoperators}/<type>/<id>.json or "
    "$HF_LEROBOT_CALIBRATION, then ~/.cache/flywheel/calibration)"
)


class RobotError(DatasetError):
    """A one-line problem with the arms, cameras or options (a DatasetError, so that every job
    that drives an arm reports it as it reports its other input problems)."""


@dataclass
class RobotConfig:
    """The SO-101's ports, calibrations and cameras (their flags: `add_flags`)."""

    follower_port: str | None = flag(None, "a real arm's follower serial port")
    leader_port: str | None = flag(None, "a real arm's leader serial port")
    follower_id: str | None = flag(None, "the follower's calibration name (LeRobot's robot id)")
    leader_id: str | None = flag(None, "the leader's calibration name (LeRobot's teleop id)")
    calibration_dir: str | None = flag(None, CALIBRATION_DIR_HELP)  # None: LeRobot's folders
    camera: list[str] = flag(
        default_factory=list,
        help="a real arm's OpenCV camera: front=0, wrist=/dev/video2 (repeatable)",
        metavar="NAME=SOURCE",
        append=True,
    )

    @property
    def calibrations(self) -> str | None:
        """The calibrations folder (None: LeRobot's, `pipelines.dataset.calibration`)."""
        return self.calibration_dir

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
    leader: bool = flag(False, "a leader arm (its calibration among LeRobot's teleoperators)")


@dataclass
class CalibrateConfig(FlagConfig):
    """`flywheel robot calibrate`: record an arm's homing offsets and ranges."""

    arm_id: str = flag(help="name to save the calibration under (LeRobot's --robot.id)")
    port: str | None = flag(None, "serial port (unset: an emulated arm)")
    sim: bool = flag(False, "an emulated arm (without --port)")
    leader: bool = flag(
        False, "a leader arm (saved among LeRobot's teleoperators; --sim: the emulated leader)"
    )
    calibration_dir: str | None = flag(
        None,
        "save to <DIR>/<arm id>.json (unset: LeRobot's folders, where lerobot-teleoperate and "
        "lerobot-record find it: robots/so_follower and robots/so101_follower, or "
        "teleoperators/so_leader and so101_leader, under ~/.cache/huggingface/lerobot/calibration "
        "or $HF_LEROBOT_CALIBRATION)",
    )


@dataclass
class TeleopConfig(FlagConfig):
    """`flywheel robot teleop`: drive the follower from the leader and record episodes."""

    out: str = flag(help="LeRobot dataset folder (created, or appended to)", positional=True)
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
    format: str | None = flag(  # None: V30 for a new dataset, the dataset's when appending
        None,
        "LeRobot layout of a new dataset: v3.0 (unset, as LeRobot >= 0.4 records) or v2.1 "
        "(openpi, GR00T); appending keeps the dataset's",
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
