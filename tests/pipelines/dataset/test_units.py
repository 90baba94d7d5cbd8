"""`pipelines.dataset.units`: LeRobot's joint units, their conversions, and datasets' units
(the recording LeRobot 0.6.1 wrote in -100..100, `tests/data/lerobot061_v30_m100`)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from actors.feetech.calibration import Normalizer
from pipelines.dataset import DatasetError, EpisodeRecorder, LeRobotDataset
from pipelines.dataset.calibration import MotorCalibration, read_calibration_file
from pipelines.dataset.units import (
    DEGREES,
    EE_UNITS,
    RANGE_0_100,
    RANGE_M100_100,
    SO101_JOINTS,
    JointConverter,
    could_be_m100,
    dataset_units,
    from_raw,
    to_raw,
)

DATA = Path(__file__).resolve().parents[2] / "data"
M100 = DATA / "lerobot061_v30_m100"
CALIBRATION = DATA / "lerobot061_v30_m100_calibration/robots/so_follower/flywheel_m100.json"
RAW = DATA / "lerobot061_v30_m100_raw.npz"


def random_motor(rng, drive_mode: int) -> MotorCalibration:
    low = int(rng.integers(0, 2000))
    return MotorCalibration(1, drive_mode, int(rng.integers(-2047, 2047)), low, low + 300 + 1700)


@pytest.mark.parametrize("drive_mode", [0, 1])
def test_round_trips_are_within_a_hundredth_of_a_degree(drive_mode):
    rng = np.random.default_rng(drive_mode)
    for _ in range(20):
        motor = random_motor(rng, drive_mode)
        raw = rng.uniform(motor.range_min, motor.range_max, 200)
        for unit in (DEGREES, RANGE_M100_100, RANGE_0_100):
            assert np.abs(to_raw(from_raw(raw, motor, unit), motor, unit) - raw).max() < 1e-9
        # range_m100_100 -> raw -> degrees -> raw -> range_m100_100, and the degrees agree
        m100 = from_raw(raw, motor, RANGE_M100_100)
        degrees = from_raw(to_raw(m100, motor, RANGE_M100_100), motor, DEGREES)
        assert np.abs(degrees - from_raw(raw, motor, DEGREES)).max() < 0.01
        back = from_raw(to_raw(degrees, motor, DEGREES), motor, RANGE_M100_100)
        assert np.abs(to_raw(back, motor, RANGE_M100_100) - raw).max() * 360 / 4096 < 0.01


def test_lerobot_formulas_and_the_arms_degrees():
    motor = MotorCalibration(id=2, drive_mode=0, homing_offset=157, range_min=612, range_max=3401)
    flipped = MotorCalibration(id=6, drive_mode=1, homing_offset=0, range_min=2031, range_max=3476)
    assert from_raw([612, 3401, (612 + 3401) / 2], motor, RANGE_M100_100).tolist() == [
        -100.0,
        100.0,
        0.0,
    ]
    assert from_raw([500, 9000], motor, RANGE_M100_100).tolist() == [-100.0, 100.0]  # clipped
    assert from_raw([612], flipped, RANGE_M100_100).tolist() == [100.0]  # drive mode negates
    assert from_raw([2031, 3476], flipped, RANGE_0_100).tolist() == [100.0, 0.0]
    # degrees are the arms' own (`Normalizer`, what the follower and leader actors read)
    arm = Normalizer({"shoulder_lift": motor, "gripper": flipped})
    for raw, grip in ((612, 2031), (1500, 2500), (2007, 3000), (3401, 3476)):
        assert from_raw(raw, motor, DEGREES) == pytest.approx(
            arm.normalize({"shoulder_lift": raw})["shoulder_lift"], abs=1e-9
        )
        assert from_raw(grip, flipped, RANGE_0_100) == pytest.approx(
            arm.normalize({"gripper": grip})["gripper"], abs=1e-9
        )


def test_the_lerobot_recording_needs_units_then_converts_within_a_hundredth():
    ds = LeRobotDataset(M100)
    with pytest.raises(DatasetError) as e:  # -100..100 values, no units: ask, in one line
        dataset_units(ds)
    assert "info.json: no units for observation.state" in str(e.value)
    assert "--units degrees or --units range_m100_100" in str(e.value)
    assert "\n" not in str(e.value)
    units = dataset_units(ds, RANGE_M100_100)
    assert units.joints == list(SO101_JOINTS)
    assert units.state == [RANGE_M100_100] * 5 + [RANGE_0_100] == units.action
    with pytest.raises(DatasetError, match="need the arm's calibration to convert to degrees"):
        units.converters(None, "where", "give --calibration")
    calibration = read_calibration_file(CALIBRATION)
    state_units, action_units = units.converters(calibration, "where", "hint")
    # the arm's degrees of the raw positions LeRobot normalized into the dataset
    arm, raw = Normalizer(calibration), np.load(RAW)
    worst = 0.0
    for e in ds.episode_indices:
        table = ds.read_episode(e)
        for key, converter in (("observation.state", state_units), ("action", action_units)):
            values = np.stack(table.column(key).to_numpy(zero_copy_only=False))
            degrees = converter.to_internal(values.astype(np.float64))
            truth = np.array(
                [
                    [arm.normalize({n: int(r[i])})[n] for i, n in enumerate(SO101_JOINTS)]
                    for r in raw[f"{'state' if key == 'observation.state' else 'action'}/{e}"]
                ]
            )
            worst = max(worst, float(np.abs(degrees - truth).max()))
            again = converter.from_internal(degrees)  # and back to LeRobot's units
            assert np.abs(again - values).max() < 1e-3
    assert worst < 0.01


def test_units_in_info_json_are_read_checked_and_win(tmp_path):
    root = tmp_path / "m100"
    shutil.copytree(M100, root)
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    units = [RANGE_M100_100] * 5 + [RANGE_0_100]
    info["features"]["observation.state"]["units"] = units
    info_path.write_text(json.dumps(info))
    found = dataset_units(LeRobotDataset(root))
    assert (found.state, found.action, found.source) == (units, units, "info.json")
    with pytest.raises(DatasetError, match="--units degrees: .*info.json gives observation"):
        dataset_units(LeRobotDataset(root), DEGREES)
    for bad, message in (
        (["degrees"] * 5, "has 5 units for 6"),
        (["degrees"] * 5 + ["percent"], "'percent' is not one of"),
        ("degrees", "not a list of units"),
    ):
        info["features"]["observation.state"]["units"] = bad
        info_path.write_text(json.dumps(info))
        with pytest.raises(DatasetError, match=f"info.json: features.*{message}"):
            dataset_units(LeRobotDataset(root))


def test_values_beyond_the_m100_range_read_as_degrees():
    names = list(SO101_JOINTS)
    low = np.array([-30.0, -99.0, 9.0, 32.0, -75.0, 2.0])  # a LeRobot SO-101 recording's ranges
    high = np.array([0.0, 10.0, 99.5, 82.0, -44.0, 39.0])
    assert could_be_m100(low, high, names)
    assert not could_be_m100(low - [0, 30, 0, 0, 0, 0], high, names)  # -129: beyond -100
    assert not could_be_m100(low, high + [0, 0, 0, 0, 0, 70], names)  # gripper above 100
    small = np.array([-20.0, -30, 10, 5, -10, 0]), np.array([20.0, 40, 60, 50, 30, 80])
    assert not could_be_m100(*small, names)  # no joint near a limit, no wide sweep: degrees


def test_the_recorder_writes_units_and_refuses_appending_other_units(tmp_path):
    root = tmp_path / "rec"
    rec = EpisodeRecorder(root, fps=10, task="t", joint_names=SO101_JOINTS, cameras={})
    rec.begin()
    for _ in range(3):
        rec.add(np.full(6, 150.0), np.full(6, 150.0), {})
    rec.save(success=True)
    rec.close()
    ds = LeRobotDataset(root)
    assert ds.version == "v3.0"  # the default layout
    units = [DEGREES] * 5 + [RANGE_0_100]
    for key in ("observation.state", "action"):
        assert ds.features[key]["units"] == units
        assert ds.features[key]["names"] == [f"{j}.pos" for j in SO101_JOINTS]
    assert dataset_units(ds).source == "info.json"
    ee = EpisodeRecorder(
        tmp_path / "ee",
        fps=10,
        task="t",
        joint_names=SO101_JOINTS,
        cameras={},
        action_names=["dx", "dy", "dz", "gripper"],
        action_units=EE_UNITS,
    )
    ee.close()
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["action"]["units"] = [RANGE_M100_100] * 5 + [RANGE_0_100]
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="action is in .*cannot append episodes in"):
        EpisodeRecorder(root, fps=10, task="t", joint_names=SO101_JOINTS, cameras={})


def test_a_converter_names_what_is_missing():
    motor = MotorCalibration(1, 0, 0, 1000, 3000)
    with pytest.raises(DatasetError, match="^policy-x: joints in range_m100_100 need .*; hint$"):
        JointConverter(["shoulder_pan"], [RANGE_M100_100], None, "policy-x", "hint")
    with pytest.raises(DatasetError, match="calibration has no motor 'elbow_flex'"):
        JointConverter(["elbow_flex.pos"], [RANGE_M100_100], {"shoulder_pan": motor}, "w")
    same = JointConverter(SO101_JOINTS, [DEGREES] * 5 + [RANGE_0_100], None, "w")
    assert same.identity and same.to_internal(np.ones(6)).tolist() == [1.0] * 6
    half = JointConverter(["shoulder_pan"], [RANGE_M100_100], {"shoulder_pan": motor}, "w")
    assert half.to_internal(np.array([[50.0]]))[0, 0] == pytest.approx(500 * 360 / 4096)
