"""The SO-101 workcell: its shared config and flags (`config`), its one builder (`build`), and
the drivers of `flywheel robot` (`calibrate`: ping and calibrate, `record`: teleop, `emulate`)."""

from actors.so101.build import (
    EMULATED_BUS,
    SO101Arms,
    arm_calibration,
    bus_options,
    calibration_of,
    open_so101,
)
from actors.so101.config import (
    CAMERA_PREFIX,
    FollowerConfig,
    RobotConfig,
    RobotError,
    camera_sources,
)

__all__ = [
    "CAMERA_PREFIX",
    "EMULATED_BUS",
    "FollowerConfig",
    "RobotConfig",
    "RobotError",
    "SO101Arms",
    "arm_calibration",
    "bus_options",
    "calibration_of",
    "camera_sources",
    "open_so101",
]
