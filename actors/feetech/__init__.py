"""Feetech STS3215 servo bus (SO-101 arm) and its calibration.

The servo emulator lives in `actors.feetech.emulator` (not imported here, so that
`python -m actors.feetech.emulator` runs cleanly).
"""

from actors.feetech.bus import (
    SO101_MOTORS,
    BusError,
    FeetechBus,
    HandshakeError,
    MotorFaultError,
)
from actors.feetech.calibration import (
    ArmCalibration,
    CalibrationError,
    MotorCalibration,
    Normalizer,
    finish_calibration,
    load_calibration,
    record_ranges_of_motion,
    restore_calibration,
    save_arm_calibration,
    save_calibration,
    set_half_turn_homings,
    write_calibration,
)

__all__ = [
    "SO101_MOTORS",
    "ArmCalibration",
    "BusError",
    "CalibrationError",
    "FeetechBus",
    "HandshakeError",
    "MotorCalibration",
    "MotorFaultError",
    "Normalizer",
    "finish_calibration",
    "load_calibration",
    "record_ranges_of_motion",
    "restore_calibration",
    "save_arm_calibration",
    "save_calibration",
    "set_half_turn_homings",
    "write_calibration",
]
