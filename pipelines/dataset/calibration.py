"""SO-101 arm calibrations as LeRobot keeps them: one JSON file per arm, in LeRobot's folders.

A calibration maps each motor name to its `MotorCalibration`: `id` (servo id), `drive_mode`
(0: as the servo counts, 1: reversed), `homing_offset` (written to the servo: Present_Position
reads the encoder minus it, so that the middle of the range reads 2047), `range_min` and
`range_max` (the range of motion in that homed frame). The JSON file is LeRobot's schema, the
fields in this order per motor:

    {"shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1490, "range_min": 758,
                      "range_max": 3292}, ...}

LeRobot keeps a follower's file at `<root>/robots/<type>/<id>.json` and a leader's at
`<root>/teleoperators/<type>/<id>.json`; `<root>` is `$HF_LEROBOT_CALIBRATION`, else
`$HF_LEROBOT_HOME/calibration`, else `$HF_HOME/lerobot/calibration` (HF_HOME defaults to
`$XDG_CACHE_HOME/huggingface`, i.e. `~/.cache/huggingface`). The SO-101's type folder is
`so_follower` / `so_leader` in LeRobot >= 0.5 (0.6.1 here) and `so101_follower` / `so101_leader`
before: both are read (the newer file wins when both exist) and `flywheel robot calibrate`
writes both, so that either LeRobot finds it. Flywheel's own former folder,
`~/.cache/flywheel/calibration/<id>.json`, is still read after LeRobot's, for arms calibrated
before; `--calibration-dir DIR` (`<DIR>/<id>.json`) replaces all of these.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from pipelines.dataset.errors import DatasetError

FLYWHEEL_CALIBRATION_DIR = Path("~/.cache/flywheel/calibration").expanduser()
# role -> (LeRobot's folder, its SO-101 type folders, the newest LeRobot's first)
LEROBOT_FOLDERS = {
    "follower": ("robots", ("so_follower", "so101_follower")),
    "leader": ("teleoperators", ("so_leader", "so101_leader")),
}
MAX_CALIBRATION_BYTES = 1 << 20  # a calibration is a few hundred bytes


@dataclass(frozen=True)
class MotorCalibration:
    """Calibration of one motor; positions are raw counts in the homed frame."""

    id: int
    drive_mode: int  # 0: as the servo counts, 1: reversed
    homing_offset: int
    range_min: int
    range_max: int


FIELDS = tuple(f.name for f in fields(MotorCalibration))


def lerobot_calibration_root() -> Path:
    """LeRobot's calibrations folder, from the environment as LeRobot reads it."""
    if os.environ.get("HF_LEROBOT_CALIBRATION"):
        return Path(os.environ["HF_LEROBOT_CALIBRATION"]).expanduser()
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser() / "calibration"
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    hf_home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(hf_home).expanduser() / "lerobot" / "calibration"


def check_arm_id(arm_id: str) -> str:
    """An arm id names a file: a plain name, no folders."""
    if not arm_id or arm_id in (".", "..") or "/" in arm_id or "\\" in arm_id:
        raise DatasetError(f"arm id {arm_id!r}: a plain name (no '/'), as LeRobot's --robot.id")
    return arm_id


def lerobot_calibration_files(role: str, arm_id: str) -> list[Path]:
    """Every file LeRobot may keep the `role` ("follower" / "leader") arm's calibration in."""
    folder, types = LEROBOT_FOLDERS[role]
    root = lerobot_calibration_root() / folder
    return [root / kind / f"{check_arm_id(arm_id)}.json" for kind in types]


def find_calibration_file(role: str, arm_id: str, directory: str | None = None) -> Path | None:
    """The arm's calibration file (module docstring), or None: `<directory>/<id>.json` when
    a directory is given, else the newest of LeRobot's files, else Flywheel's former folder."""
    check_arm_id(arm_id)
    if directory is not None:
        path = Path(directory).expanduser() / f"{arm_id}.json"
        return path if path.is_file() else None
    found = [p for p in lerobot_calibration_files(role, arm_id) if p.is_file()]
    if found:
        return max(found, key=lambda p: p.stat().st_mtime_ns)
    legacy = FLYWHEEL_CALIBRATION_DIR / f"{arm_id}.json"
    return legacy if legacy.is_file() else None


def searched(role: str, arm_id: str, directory: str | None = None) -> str:
    """Where `find_calibration_file` looked, for an error message."""
    if directory is not None:
        return str(Path(directory).expanduser() / f"{arm_id}.json")
    places = [*lerobot_calibration_files(role, arm_id), FLYWHEEL_CALIBRATION_DIR / f"{arm_id}.json"]
    return ", ".join(str(p) for p in places)


def read_calibration_file(path: str | os.PathLike) -> dict[str, MotorCalibration]:
    """A calibration JSON file (LeRobot's schema), checked; one-line DatasetErrors name the
    file, the motor and the field."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CALIBRATION_BYTES:
            raise DatasetError(f"{path}: {path.stat().st_size} bytes, not a calibration file")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable calibration ({e})") from None
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: not a calibration (an object of motors, as LeRobot writes)")
    calibration = {}
    for name, motor in data.items():
        if not isinstance(motor, dict):
            raise DatasetError(f"{path}: motor {name!r} is not an object")
        missing = [f for f in FIELDS if f not in motor]
        if missing:
            raise DatasetError(f"{path}: motor {name!r} has no {missing[0]!r}")
        for f in FIELDS:
            value = motor[f]
            if isinstance(value, bool) or not isinstance(value, int):
                raise DatasetError(f"{path}: motor {name!r}: {f} is {value!r}, not an integer")
        if motor["drive_mode"] not in (0, 1):
            raise DatasetError(f"{path}: motor {name!r}: drive_mode {motor['drive_mode']}, 0 or 1")
        if motor["range_max"] <= motor["range_min"]:
            raise DatasetError(
                f"{path}: motor {name!r}: empty range {motor['range_min']}..{motor['range_max']}"
            )
        calibration[str(name)] = MotorCalibration(**{f: motor[f] for f in FIELDS})
    return calibration


def load_calibration_option(value: str, option: str) -> dict[str, MotorCalibration]:
    """`--calibration FILE|ID`: a calibration JSON file, or a follower's id in LeRobot's
    folders (then Flywheel's former one); a one-line DatasetError when neither is there."""
    path = Path(value).expanduser()
    if path.suffix == ".json" or os.sep in value or path.is_file():
        if not path.is_file():
            raise DatasetError(f"{option} {value}: no such calibration file")
        return read_calibration_file(path)
    try:
        found = find_calibration_file("follower", value)
    except DatasetError as e:
        raise DatasetError(f"{option}: {e}") from None
    if found is None:
        raise DatasetError(
            f"{option} {value}: neither a calibration file nor a follower id calibrated in "
            f"LeRobot's folders (looked for {searched('follower', value)})"
        )
    return read_calibration_file(found)
