"""Per-arm calibration of STS3215 joints: homing, range recording, JSON files, normalization.

Calibration of one arm, in two steps a CLI (prompts) or a test (emulator) can drive:

1. `set_half_turn_homings`: torque off, the user holds the arm in the middle of its range; the
   homing offsets are reset to 0, the raw positions read, and Homing_Offset = raw - 2047 written,
   so every joint now reads 2047 there (the servo reports raw - Homing_Offset mod 4096).
2. `record_ranges_of_motion`: the user moves every joint through its whole range while
   Present_Position is polled; the min/max seen (in the homed frame) are the range.

`finish_calibration` writes Min/Max_Position_Limit and returns the `MotorCalibration`s;
`save_calibration` / `load_calibration` keep them as one JSON file per arm in a folder (LeRobot's
schema), `save_arm_calibration` where LeRobot keeps them (`pipelines.dataset.calibration`), and
`write_calibration` puts a loaded calibration back on the motors.

`Normalizer` maps raw Present/Goal_Position to user units: degrees around the middle of the
range, `(raw - mid) * 360 / 4096` with mid = (range_min + range_max) / 2, for arm joints, and
`(raw - range_min) / (range_max - range_min) * 100` for the gripper. drive_mode 1 flips the
direction (degrees negated, percent mirrored). Targets are clamped to the range when converted.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from actors.feetech.bus import FeetechBus
from actors.feetech.registers import COUNTS_PER_TURN, HALF_TURN, MAX_POSITION
from pipelines.dataset.atomic import make_folders
from pipelines.dataset.calibration import (
    FLYWHEEL_CALIBRATION_DIR,
    MotorCalibration,
    lerobot_calibration_files,
)

DEFAULT_CALIBRATION_DIR = FLYWHEEL_CALIBRATION_DIR  # Flywheel's own folder, still read


class CalibrationError(ValueError):
    """A calibration is incomplete, inconsistent or does not match the bus."""


ArmCalibration = dict[str, MotorCalibration]


# ----- files -------------------------------------------------------------------------------


def calibration_path(arm_id: str, directory: str | Path = DEFAULT_CALIBRATION_DIR) -> Path:
    """Path of the JSON file of arm `arm_id`."""
    return Path(directory).expanduser() / f"{arm_id}.json"


def save_calibration(
    calibration: Mapping[str, MotorCalibration],
    arm_id: str,
    directory: str | Path = DEFAULT_CALIBRATION_DIR,
) -> Path:
    """Write the arm's JSON file atomically and durably (a fsynced temp file in the same folder,
    os.replace, then the folder fsynced so that the rename survives a power loss)."""
    path = calibration_path(arm_id, directory)
    make_folders(path.parent)
    text = json.dumps({name: asdict(motor) for name, motor in calibration.items()}, indent=4)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def save_arm_calibration(
    calibration: Mapping[str, MotorCalibration],
    role: str,
    arm_id: str,
    directory: str | Path | None = None,
) -> list[Path]:
    """Write the `role` ("follower" / "leader") arm's calibration where it is read from:
    `<directory>/<arm_id>.json`, or (no directory) each of LeRobot's files for the SO-101
    (`pipelines.dataset.calibration`: LeRobot 0.6's type folder and the earlier one), each
    atomically and durably (`save_calibration`). Returns the paths written."""
    if directory is not None:
        return [save_calibration(calibration, arm_id, directory)]
    return [
        save_calibration(calibration, arm_id, path.parent)
        for path in lerobot_calibration_files(role, arm_id)
    ]


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (a file renamed into it) to the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_calibration(
    arm_id: str, directory: str | Path = DEFAULT_CALIBRATION_DIR
) -> ArmCalibration:
    """Read the arm's JSON file; FileNotFoundError if the arm was never calibrated."""
    data = json.loads(calibration_path(arm_id, directory).read_text())
    try:
        return {name: MotorCalibration(**fields) for name, fields in data.items()}
    except TypeError as exc:
        raise CalibrationError(f"malformed calibration file for {arm_id!r}: {exc}") from exc


def write_calibration(bus: FeetechBus, calibration: Mapping[str, MotorCalibration]) -> None:
    """Put a calibration on the motors: torque off, Homing_Offset and Min/Max_Position_Limit.

    Raises CalibrationError if the bus's motors and IDs differ from the calibration's.
    """
    mismatched = sorted(
        name
        for name in set(bus.motors) | set(calibration)
        if name not in calibration or calibration[name].id != bus.motors.get(name)
    )
    if mismatched:
        raise CalibrationError(f"calibration does not match the bus for: {', '.join(mismatched)}")
    bus.disable_torque()
    for name, motor in calibration.items():
        bus.write("Homing_Offset", name, motor.homing_offset)
        bus.write("Min_Position_Limit", name, motor.range_min)
        bus.write("Max_Position_Limit", name, motor.range_max)


def restore_calibration(
    bus: FeetechBus, arm_id: str, directory: str | Path = DEFAULT_CALIBRATION_DIR
) -> ArmCalibration:
    """Load the arm's JSON file and write it to the motors (`write_calibration`); return it."""
    calibration = load_calibration(arm_id, directory)
    write_calibration(bus, calibration)
    return calibration


# ----- procedure ---------------------------------------------------------------------------


def set_half_turn_homings(bus: FeetechBus, motors: Iterable[str] | None = None) -> dict[str, int]:
    """Step 1, arm held in the middle of its range: make each joint read 2047 there.

    Switches torque off, resets Homing_Offset to 0 and the position limits to 0..4095, reads
    the raw positions and writes Homing_Offset = raw - 2047. Returns the offsets written.
    A joint whose raw position is 4095 cannot be homed to 2047 (the offset needs 12 bits):
    ValueError, move it slightly.
    """
    names = list(bus.motors) if motors is None else list(motors)
    bus.disable_torque(names)
    for name in names:
        bus.write("Homing_Offset", name, 0)
        bus.write("Min_Position_Limit", name, 0)
        bus.write("Max_Position_Limit", name, MAX_POSITION)
    raw = bus.sync_read("Present_Position", names)
    offsets = {name: position - HALF_TURN for name, position in raw.items()}
    for name, offset in offsets.items():
        bus.write("Homing_Offset", name, offset)
    return offsets


def record_ranges_of_motion(
    bus: FeetechBus,
    motors: Iterable[str] | None = None,
    *,
    stop: Callable[[], bool] | threading.Event | None = None,
    duration_s: float | None = None,
    poll_interval_s: float = 0.02,
) -> tuple[dict[str, int], dict[str, int]]:
    """Step 2: poll Present_Position until `stop` says so or `duration_s` passes; return
    (mins, maxes) per motor.

    `stop` is a callable returning True or a threading.Event; it is checked after every poll,
    so a test can script the moves in it. Raises CalibrationError naming the motors that did
    not move.
    """
    if stop is None and duration_s is None:
        raise ValueError("give a stop callback/event or a duration")
    should_stop = stop.is_set if isinstance(stop, threading.Event) else stop
    names = list(bus.motors) if motors is None else list(motors)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    mins = bus.sync_read("Present_Position", names)
    maxes = dict(mins)
    while True:
        for name, position in bus.sync_read("Present_Position", names).items():
            mins[name] = min(mins[name], position)
            maxes[name] = max(maxes[name], position)
        if (should_stop is not None and should_stop()) or (
            deadline is not None and time.monotonic() >= deadline
        ):
            break
        time.sleep(poll_interval_s)
    frozen = [name for name in names if mins[name] == maxes[name]]
    if frozen:
        raise CalibrationError(f"these joints did not move: {', '.join(frozen)}")
    return mins, maxes


def finish_calibration(
    bus: FeetechBus,
    homing_offsets: Mapping[str, int],
    mins: Mapping[str, int],
    maxes: Mapping[str, int],
    *,
    full_turn_motors: Iterable[str] = (),
    drive_modes: Mapping[str, int] | None = None,
) -> ArmCalibration:
    """Write Min/Max_Position_Limit and return the calibration of every motor of the bus.

    `full_turn_motors` (e.g. a continuous wrist roll) get the range 0..4095 whatever was
    recorded. Save it with `save_calibration`.
    """
    full_turn = set(full_turn_motors)
    drive_modes = drive_modes or {}
    calibration: ArmCalibration = {}
    for name, motor_id in bus.motors.items():
        low, high = (0, MAX_POSITION) if name in full_turn else (mins[name], maxes[name])
        calibration[name] = MotorCalibration(
            id=motor_id,
            drive_mode=drive_modes.get(name, 0),
            homing_offset=homing_offsets[name],
            range_min=low,
            range_max=high,
        )
        bus.write("Min_Position_Limit", name, low)
        bus.write("Max_Position_Limit", name, high)
    return calibration


# ----- normalization -----------------------------------------------------------------------


class Normalizer:
    """Raw positions <-> degrees (arm joints) or 0..100 (the `percent_motors`, e.g. gripper)."""

    def __init__(
        self,
        calibration: Mapping[str, MotorCalibration],
        percent_motors: Iterable[str] = ("gripper",),
    ) -> None:
        for name, motor in calibration.items():
            if motor.range_max <= motor.range_min:
                raise CalibrationError(f"{name}: empty range {motor.range_min}..{motor.range_max}")
        self.calibration = dict(calibration)
        self.percent_motors = frozenset(percent_motors)

    def normalize(self, raw: Mapping[str, int]) -> dict[str, float]:
        """Raw positions (homed frame) to degrees / percent; not clamped."""
        return {name: self._to_user(name, value) for name, value in raw.items()}

    def unnormalize(self, values: Mapping[str, float]) -> dict[str, int]:
        """Degrees / percent to raw goal positions, clamped to the calibrated range."""
        return {name: self._to_raw(name, value) for name, value in values.items()}

    def _to_user(self, name: str, raw: int) -> float:
        motor = self.calibration[name]
        low, high = motor.range_min, motor.range_max
        if name in self.percent_motors:
            percent = (raw - low) / (high - low) * 100.0
            return 100.0 - percent if motor.drive_mode else percent
        degrees = (raw - (low + high) / 2) * 360.0 / COUNTS_PER_TURN
        return -degrees if motor.drive_mode else degrees

    def _to_raw(self, name: str, value: float) -> int:
        motor = self.calibration[name]
        low, high = motor.range_min, motor.range_max
        if name in self.percent_motors:
            percent = 100.0 - value if motor.drive_mode else value
            raw = low + percent / 100.0 * (high - low)
        else:
            degrees = -value if motor.drive_mode else value
            raw = (low + high) / 2 + degrees * COUNTS_PER_TURN / 360.0
        return min(high, max(low, round(raw)))
