"""The SO-101's configs: the robot every arm-driving job shares, and `flywheel robot`'s commands.

`RobotConfig` holds the robot fields hilserl, collect and `robot teleop` share (follower and
leader serial ports, their calibration names, the calibrations folder, the cameras);
`add_robot_flags` adds their flags to a job's parser, and `pipelines.runtime.cli.
config_from_flags` builds a config holding one from the same flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field

from actors.feetech.calibration import DEFAULT_CALIBRATION_DIR
from pipelines.dataset import DatasetError
from pipelines.simulator.tasks import DEFAULT_TASK

CAMERA_PREFIX = "observation.images."


class RobotError(DatasetError):
    """A one-line problem with the arms, cameras or options (a DatasetError, so that every job
    that drives an arm reports it as it reports its other input problems)."""


@dataclass
class RobotConfig:
    """The SO-101's ports, calibrations and cameras (`add_robot_flags` adds their flags)."""

    follower_port: str | None = None  # a real follower's serial port
    leader_port: str | None = None  # a real leader's serial port
    follower_id: str | None = None  # the follower's calibration name
    leader_id: str | None = None  # the leader's calibration name
    calibration_dir: str | None = None  # None: DEFAULT_CALIBRATION_DIR
    camera: list[str] = field(default_factory=list)  # a real arm's OpenCV cameras, NAME=SOURCE

    @property
    def calibrations(self) -> str:
        """The calibrations folder."""
        return calibrations_folder(self.calibration_dir)

    @property
    def has_ports(self) -> bool:
        return bool(self.follower_port or self.leader_port)

    def camera_sources(self) -> dict[str, int | str]:
        return camera_sources(self.camera)


def calibrations_folder(calibration_dir: str | None) -> str:
    return calibration_dir or str(DEFAULT_CALIBRATION_DIR)


def add_robot_flags(parser: argparse.ArgumentParser, *, leader: bool = True) -> None:
    """`RobotConfig`'s flags. `leader=False`, a job that drives the follower only: the leader's
    flags are hidden from --help (still read, so that a printed config reads back)."""

    def leader_help(text: str) -> str:
        return text if leader else argparse.SUPPRESS

    parser.add_argument("--follower-port", default=None, help="a real arm's follower serial port")
    parser.add_argument(
        "--leader-port", default=None, help=leader_help("a real arm's leader serial port")
    )
    parser.add_argument("--follower-id", default=None, help="the follower's calibration name")
    parser.add_argument(
        "--leader-id", default=None, help=leader_help("the leader's calibration name")
    )
    add_calibration_dir_flag(parser)
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="a real arm's OpenCV camera: front=0, wrist=/dev/video2 (repeatable)",
    )


def add_calibration_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibration-dir",
        default=None,
        help=f"the arms' calibrations, one JSON file per arm id (unset: {DEFAULT_CALIBRATION_DIR})",
    )


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


@dataclass
class PingConfig:
    """`flywheel robot ping`: handshake with every servo of an arm and read its joints."""

    port: str | None = None  # None: an emulated arm
    sim: bool = False
    arm_id: str | None = None  # the calibration to read the joints with
    calibration_dir: str | None = None


@dataclass
class CalibrateConfig:
    """`flywheel robot calibrate`: record an arm's homing offsets and ranges."""

    arm_id: str  # the name to save the calibration under
    port: str | None = None  # None: an emulated arm
    sim: bool = False
    leader: bool = False  # (emulated) calibrate the leader
    calibration_dir: str | None = None


@dataclass
class TeleopConfig:
    """`flywheel robot teleop`: drive the follower from the leader and record episodes."""

    out: str
    robot: RobotConfig = field(default_factory=RobotConfig)
    fps: float = 30.0
    episodes: int = 1
    episode_time: float = 30.0  # seconds per episode
    task: str | None = None  # None with the emulated arms: the simulated task's text
    max_step: float = 10.0  # largest follower move per tick (degrees)
    steps_after_success: int = 0
    sim: bool = False  # the emulated arms (the default without ports)
    sim_task: str = DEFAULT_TASK
    seed: int = 0
    image_size: int = 128
    vcodec: str | None = None
    format: str | None = None  # None: V21 for a new dataset, the dataset's when appending
    ray_address: str | None = None

    @property
    def emulated(self) -> bool:
        return self.sim or (self.robot.follower_port is None and self.robot.leader_port is None)


@dataclass
class EmulateConfig:
    """`flywheel robot emulate`: start emulated follower and leader arms; print their ports."""

    sim_task: str = DEFAULT_TASK
    seed: int = 0
    hand: str = "none"  # none | expert: move the leader like an expert operator would
