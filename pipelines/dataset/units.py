"""Joint units of SO-101 datasets and policies, as LeRobot names them, and the conversions.

Every dataset Flywheel writes gives the unit of each component of `observation.state` and
`action` in `meta/info.json`, under `units`, next to the feature's `names`:

    "observation.state": {"dtype": "float32", "shape": [6],
        "names": ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos",
                  "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"],
        "units": ["degrees", "degrees", "degrees", "degrees", "degrees", "range_0_100"]}

The units are LeRobot's `MotorNormMode`s in lower case (plus `m` for HIL-SERL's end-effector
deltas, `["m", "m", "m", "range_0_100"]`). Per motor, from its calibration (`range_min`,
`range_max`, `drive_mode`; `raw` is Present_Position, which the servo already reports in the
homed frame, the encoder minus `homing_offset`), with mid = (range_min + range_max) / 2:

    degrees         (raw - mid) * 360 / 4096, negated when drive_mode is 1: Flywheel's one
                    internal unit for body joints (the arms' `Normalizer`, the simulator,
                    HIL-SERL, evaluation). LeRobot's DEGREES (`use_degrees=True`, LeRobot
                    0.6.1's default) divides by 4095 and ignores drive_mode (its SO-101
                    calibration always writes 0): the same unit within 0.044 deg over +-180 deg,
                    under one encoder count (0.088 deg), so it is read as degrees.
    range_m100_100  LeRobot's RANGE_M100_100 (`use_degrees=False`, the default of earlier
                    LeRobot releases): (clip(raw, min, max) - min) / (max - min) * 200 - 100,
                    negated when drive_mode is 1.
    range_0_100     the gripper, in LeRobot and Flywheel alike: (clip(raw) - min) / (max - min)
                    * 100, or 100 minus that when drive_mode is 1.

So range_m100_100 -> degrees is v * (range_max - range_min) / 200 * 360 / 4096 per joint
(drive_mode cancels, the homing offset does not enter): it needs the calibration of the arm
that recorded, and nothing converts without one.

Reading a dataset (`dataset_units`): the units in info.json; else `--units degrees` or
`--units range_m100_100` (the body joints; the gripper is range_0_100 in both); else values
that could be range_m100_100 (`could_be_m100`: body joints within -100..100, gripper within
0..100, and a body joint spanning at least 100 of it or reaching +-95) are a one-line
DatasetError asking for `--units`; anything else is degrees. `JointConverter` converts between
a dataset's or a policy's units and the internal ones at the edges (reading a dataset,
driving the simulator or an arm with a policy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.dataset.calibration import MotorCalibration
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.tables import read_columns

DEGREES, RANGE_M100_100, RANGE_0_100, METRES = "degrees", "range_m100_100", "range_0_100", "m"
UNITS = (DEGREES, RANGE_M100_100, RANGE_0_100, METRES)
BODY_UNITS = (DEGREES, RANGE_M100_100)  # what `--units` names (the gripper: range_0_100)
UNITS_KEY = "units"  # the info.json feature key
EE_UNITS = [METRES, METRES, METRES, RANGE_0_100]  # dx, dy, dz, gripper
SO101_JOINTS = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
COUNTS_PER_TURN = 4096  # STS3215
UNITS_HELP = (  # .format(whose): "the dataset's"
    "the unit of {} joints when its meta/info.json does not give it: degrees or "
    "range_m100_100 (LeRobot's -100..100 of the calibrated range, use_degrees=False); the "
    "gripper is 0..100 in both"
)


def motor_name(name: str) -> str:
    """`shoulder_pan.pos` (LeRobot's feature name) -> `shoulder_pan` (the motor's)."""
    return name.removesuffix(".pos")


def is_gripper(name: str) -> bool:
    return motor_name(name) == "gripper"


def internal_units(names: Sequence[str]) -> list[str]:
    """Flywheel's units for these joints: degrees, the gripper range_0_100."""
    return [RANGE_0_100 if is_gripper(n) else DEGREES for n in names]


def body_units(names: Sequence[str], body: str) -> list[str]:
    """`--units body`: `body` for every joint but the gripper (range_0_100)."""
    if body not in BODY_UNITS:
        raise DatasetError(f"--units {body!r}: {' or '.join(BODY_UNITS)}")
    return [RANGE_0_100 if is_gripper(n) else body for n in names]


def feature_joints(feature: dict) -> list[str]:
    """The motor names of a 6-D joint feature: its `names` (LeRobot's `<joint>.pos`, maybe
    nested as {"motors": [...]}), else the SO-101's joints in LeRobot's order."""
    names = feature.get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None)
    dim = int(np.prod(feature.get("shape") or [0]))
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return [motor_name(n) for n in names]
    return list(SO101_JOINTS) if dim == len(SO101_JOINTS) else [f"joint_{i}" for i in range(dim)]


def joint_feature(names: Sequence[str], units: Sequence[str] | None) -> dict:
    """A float32 vector feature named LeRobot's way, with its units (None: left out)."""
    feature = {"dtype": "float32", "shape": [len(names)], "names": list(names)}
    if units is not None:
        feature[UNITS_KEY] = list(units)
    return feature


def name_so101_features(features: dict) -> dict:
    """`features` with `observation.state` and a 6-D `action` named `<joint>.pos` and given
    Flywheel's units (a writer of simulated SO-101 episodes)."""
    names = [f"{j}.pos" for j in SO101_JOINTS]
    units = internal_units(SO101_JOINTS)
    for key in ("observation.state", "action"):
        feature = features.get(key)
        if feature is not None and list(feature.get("shape") or []) == [len(names)]:
            features[key] = {**feature, **joint_feature(names, units)}
    return features


# --------------------------------------------------------------------------- one motor


def from_raw(raw, motor: MotorCalibration, unit: str) -> np.ndarray:
    """Raw positions (homed frame) -> `unit` (module docstring; LeRobot's clipping)."""
    raw = np.asarray(raw, dtype=np.float64)
    low, high = motor.range_min, motor.range_max
    if unit == DEGREES:
        degrees = (raw - (low + high) / 2) * 360.0 / COUNTS_PER_TURN
        return -degrees if motor.drive_mode else degrees
    share = (np.clip(raw, low, high) - low) / (high - low)
    if unit == RANGE_M100_100:
        value = share * 200.0 - 100.0
        return -value if motor.drive_mode else value
    if unit == RANGE_0_100:
        value = share * 100.0
        return 100.0 - value if motor.drive_mode else value
    raise ValueError(f"unit {unit!r}: not a joint unit")


def to_raw(value, motor: MotorCalibration, unit: str) -> np.ndarray:
    """`unit` -> raw positions (homed frame), as floats: not rounded, not clipped."""
    value = np.asarray(value, dtype=np.float64)
    low, high = motor.range_min, motor.range_max
    if unit == DEGREES:
        degrees = -value if motor.drive_mode else value
        return (low + high) / 2 + degrees * COUNTS_PER_TURN / 360.0
    if unit == RANGE_M100_100:
        value = -value if motor.drive_mode else value
        return low + (value + 100.0) / 200.0 * (high - low)
    if unit == RANGE_0_100:
        value = 100.0 - value if motor.drive_mode else value
        return low + value / 100.0 * (high - low)
    raise ValueError(f"unit {unit!r}: not a joint unit")


# --------------------------------------------------------------------------- conversions


class JointConverter:
    """Between `units` (a dataset's or a policy's, per joint) and Flywheel's internal units,
    with the arm's calibration where they differ.

    `where` starts the one-line DatasetError raised when a joint needs converting and the
    calibration is missing or lacks its motor; `hint` ends it (the flag that gives one)."""

    def __init__(
        self,
        names: Sequence[str],
        units: Sequence[str],
        calibration: Mapping[str, MotorCalibration] | None,
        where: str,
        hint: str = "give the recording arm's calibration",
    ):
        self.names = [motor_name(n) for n in names]
        self.units = list(units)
        self.internal = internal_units(self.names)
        if len(self.units) != len(self.names):
            raise DatasetError(f"{where}: {len(self.units)} units for {len(self.names)} joints")
        self.converted = [i for i, u in enumerate(self.units) if u != self.internal[i]]
        odd = [self.units[i] for i in self.converted if self.units[i] not in UNITS[:3]]
        if odd:
            raise DatasetError(f"{where}: {odd[0]!r} is not a joint unit")
        self.motors: dict[int, MotorCalibration] = {}
        if not self.converted:
            return
        shown = sorted({self.units[i] for i in self.converted})
        if calibration is None:
            raise DatasetError(
                f"{where}: joints in {', '.join(shown)} need the arm's calibration to convert "
                f"to degrees; {hint}"
            )
        for i in self.converted:
            if self.names[i] not in calibration:
                raise DatasetError(
                    f"{where}: the calibration has no motor {self.names[i]!r} "
                    f"(it has {', '.join(sorted(calibration))})"
                )
            self.motors[i] = calibration[self.names[i]]

    @property
    def identity(self) -> bool:
        return not self.converted

    def _convert(self, values, source: list[str], target: list[str]) -> np.ndarray:
        values = np.asarray(values)
        if not self.converted:
            return values
        out = np.array(values, dtype=np.float64)
        for i in self.converted:
            raw = to_raw(out[..., i], self.motors[i], source[i])
            out[..., i] = from_raw(raw, self.motors[i], target[i])
        return out.astype(values.dtype if values.dtype.kind == "f" else np.float64)

    def to_internal(self, values) -> np.ndarray:
        """(..., joints) in `units` -> degrees (the gripper range_0_100)."""
        return self._convert(values, self.units, self.internal)

    def from_internal(self, values) -> np.ndarray:
        """(..., joints) in degrees -> `units` (range units clipped to their range, as LeRobot
        reads an arm)."""
        return self._convert(values, self.internal, self.units)


# --------------------------------------------------------------------------- datasets


def feature_units(where: str, key: str, feature: dict) -> list[str] | None:
    """A feature's `units` in info.json, checked (None: it has none)."""
    units = feature.get(UNITS_KEY)
    if units is None:
        return None
    dim = int(np.prod(feature.get("shape") or [0]))
    if not (isinstance(units, list) and all(isinstance(u, str) for u in units)):
        raise DatasetError(f"{where}: features[{key!r}].units is {units!r}, not a list of units")
    if len(units) != dim:
        raise DatasetError(f"{where}: features[{key!r}].units has {len(units)} units for {dim}")
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        raise DatasetError(
            f"{where}: features[{key!r}].units: {unknown[0]!r} is not one of {', '.join(UNITS)}"
        )
    return units


def could_be_m100(low: np.ndarray, high: np.ndarray, names: Sequence[str]) -> bool:
    """Whether per-joint value ranges [low, high] look like LeRobot's range_m100_100 (module
    docstring): the body joints within -100..100, the gripper within 0..100, and a body joint
    spanning at least 100 of it or reaching +-95 (LeRobot's values reach the calibrated
    limits, the arm's folded rest pose among them)."""
    grip = np.array([is_gripper(n) for n in names])
    body = ~grip
    slack = 1e-3
    if np.any(low[body] < -100 - slack) or np.any(high[body] > 100 + slack):
        return False
    if np.any(low[grip] < -slack) or np.any(high[grip] > 100 + slack):
        return False
    span = (high - low)[body]
    reach = np.maximum(np.abs(low), np.abs(high))[body]
    return bool(np.any(span >= 100) or np.any(reach >= 95))


@dataclass
class DatasetUnits:
    """The units a dataset's joints are in (`dataset_units`)."""

    joints: list[str]  # motor names, observation.state's order
    state: list[str]
    action: list[str] | None  # None: the action is not the joints (e.g. end-effector deltas)
    source: str  # "info.json", "--units" or "values"

    def converters(self, calibration, where: str, hint: str):
        """(state's, action's or None) `JointConverter`s to the internal units."""
        state = JointConverter(self.joints, self.state, calibration, where, hint)
        if self.action is None or self.action == self.state:
            return state, (None if self.action is None else state)
        return state, JointConverter(self.joints, self.action, calibration, where, hint)

    @property
    def body(self) -> str:
        """The body joints' one unit (degrees or range_m100_100; "mixed" if they differ)."""
        body = {u for n, u in zip(self.joints, self.state, strict=True) if not is_gripper(n)}
        return body.pop() if len(body) == 1 else "mixed"

    def meta(self) -> dict:
        """What a checkpoint records of the units its policy was trained in."""
        return {"joints": self.joints, "observation.state": self.state, "action": self.action}


def value_ranges(ds, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-component min and max of the float vector columns `keys` over every data file."""
    low = high = None
    for path in ds.data_files():
        table = read_columns(path, list(keys))
        for key in keys:
            col = table.column(key).combine_chunks()
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
            values = values.reshape(table.num_rows, -1)
            if not len(values):
                continue
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            low = lo if low is None else np.minimum(low, lo)
            high = hi if high is None else np.maximum(high, hi)
    if low is None:
        raise DatasetError(f"{ds.root}: no frames to read the joints' values from")
    return low, high


def dataset_units(ds, given: str | None = None, option: str = "--units") -> DatasetUnits:
    """The units of a LeRobot dataset's `observation.state` and joint `action` (module
    docstring); one-line DatasetErrors naming info.json. `given`: the `--units` flag."""
    where = f"{ds.root}/meta/info.json"
    state_feature = ds.features.get("observation.state")
    if state_feature is None:
        raise DatasetError(f"{where}: no 'observation.state' feature")
    joints = feature_joints(state_feature)
    action_feature = ds.features.get("action") or {}
    action_dim = int(np.prod(action_feature.get("shape") or [0]))
    state_units = feature_units(where, "observation.state", state_feature)
    action_units = feature_units(where, "action", action_feature) if action_feature else None
    joint_action = action_dim == len(joints) and (
        action_units is None or all(u != METRES for u in action_units)
    )
    if given is not None and given not in BODY_UNITS:
        raise DatasetError(f"{option} {given!r}: {' or '.join(BODY_UNITS)}")
    if state_units is not None:
        if given is not None and body_units(joints, given) != state_units:
            raise DatasetError(
                f"{option} {given}: {where} gives observation.state's units, {state_units}"
            )
        action = (action_units or state_units) if joint_action else None
        return DatasetUnits(joints, state_units, action, "info.json")
    if given is not None:
        units = body_units(joints, given)
        return DatasetUnits(joints, units, units if joint_action else None, option)
    keys = ["observation.state", *(["action"] if joint_action else [])]
    low, high = value_ranges(ds, keys[:1])
    if joint_action:
        a_low, a_high = value_ranges(ds, keys[1:])
        low, high = np.minimum(low, a_low), np.maximum(high, a_high)
    if could_be_m100(low, high, joints):
        raise DatasetError(
            f"{where}: no units for observation.state, and its values (body joints within "
            f"-100..100, gripper within 0..100) may be LeRobot's range_m100_100 as well as "
            f"degrees: give {option} degrees or {option} range_m100_100"
        )
    units = internal_units(joints)
    return DatasetUnits(joints, units, units if joint_action else None, "values")
