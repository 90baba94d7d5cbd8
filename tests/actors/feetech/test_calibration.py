"""Calibration procedure, JSON files and normalization, against the emulator."""

import json
import time

import pytest

from actors.feetech.bus import SO101_MOTORS, FeetechBus
from actors.feetech.calibration import (
    CalibrationError,
    MotorCalibration,
    Normalizer,
    calibration_path,
    finish_calibration,
    load_calibration,
    record_ranges_of_motion,
    restore_calibration,
    save_calibration,
    set_half_turn_homings,
    write_calibration,
)
from actors.feetech.emulator import STS3215Emulator

REPLY_TIMEOUT_MS = 1000  # every servo here answers: a wide timeout costs nothing, even when busy

# Physical (encoder) position of each joint in the middle of its range, and how far it goes.
CENTERS = {
    "shoulder_pan": 3000,
    "shoulder_lift": 500,  # the range crosses the encoder's 0/4095 wrap
    "elbow_flex": 2047,
    "wrist_flex": 1500,
    "wrist_roll": 2600,
    "gripper": 1000,
}
LOW = {"shoulder_pan": -800, "shoulder_lift": -600, "elbow_flex": -1000,
       "wrist_flex": -900, "wrist_roll": -1500, "gripper": -100}  # fmt: skip
HIGH = {"shoulder_pan": 900, "shoulder_lift": 1100, "elbow_flex": 1000,
        "wrist_flex": 700, "wrist_roll": 1500, "gripper": 1300}  # fmt: skip


def encoder(name: str, delta: int) -> int:
    return (CENTERS[name] + delta) % 4096


def emulated_arm() -> STS3215Emulator:
    ids = {SO101_MOTORS[name]: position for name, position in CENTERS.items()}
    return STS3215Emulator(range(1, 7), speed=20000.0, initial_positions=ids)


def bus_of(emulator: STS3215Emulator) -> FeetechBus:
    return FeetechBus(emulator.port, SO101_MOTORS, timeout_ms=REPLY_TIMEOUT_MS)


def scripted_hand(emulator: STS3215Emulator, poses: list[dict[str, int]]):
    """A `stop` callback that moves the arm through `poses` (deltas), one per poll."""
    calls = iter(range(len(poses) + 1))

    def stop() -> bool:
        step = next(calls)
        if step == len(poses):
            return True
        for name, delta in poses[step].items():
            emulator.set_position(SO101_MOTORS[name], encoder(name, delta))
        return False

    return stop


def test_calibration_round_trip(tmp_path):
    with emulated_arm() as emulator, bus_of(emulator) as bus:
        offsets = set_half_turn_homings(bus)
        assert offsets == {name: CENTERS[name] - 2047 for name in CENTERS}
        assert offsets["shoulder_lift"] == -1547
        assert bus.sync_read("Present_Position") == dict.fromkeys(SO101_MOTORS, 2047)
        assert emulator.read_register(2, "Homing_Offset") == -1547

        stop = scripted_hand(emulator, [LOW, HIGH, dict.fromkeys(CENTERS, 0)])
        mins, maxes = record_ranges_of_motion(bus, stop=stop, poll_interval_s=0.001)
        assert mins == {name: 2047 + LOW[name] for name in CENTERS}
        assert maxes == {name: 2047 + HIGH[name] for name in CENTERS}

        calibration = finish_calibration(bus, offsets, mins, maxes, full_turn_motors=["wrist_roll"])
        assert calibration["wrist_roll"].range_min == 0
        assert calibration["wrist_roll"].range_max == 4095
        assert emulator.read_register(1, "Min_Position_Limit") == 2047 - 800
        assert emulator.read_register(1, "Max_Position_Limit") == 2047 + 900
        path = save_calibration(calibration, "follower", tmp_path)

    assert path == calibration_path("follower", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["follower.json"]  # no temp file left
    stored = json.loads(path.read_text())
    assert stored["shoulder_lift"] == {
        "id": 2,
        "drive_mode": 0,
        "homing_offset": -1547,
        "range_min": 1447,
        "range_max": 3147,
    }

    # A fresh bus on servos that lost their settings: loading writes the calibration back.
    assert load_calibration("follower", tmp_path) == calibration
    with emulated_arm() as emulator, bus_of(emulator) as bus:
        loaded = restore_calibration(bus, "follower", tmp_path)
        assert loaded == calibration
        for motor in loaded.values():
            assert emulator.read_register(motor.id, "Homing_Offset") == motor.homing_offset
            assert emulator.read_register(motor.id, "Max_Position_Limit") == motor.range_max

        deltas = {name: 409 if name != "gripper" else 600 for name in CENTERS}
        for name, delta in deltas.items():
            emulator.set_position(SO101_MOTORS[name], encoder(name, delta))
        normalizer = Normalizer(loaded)
        readings = normalizer.normalize(bus.sync_read("Present_Position"))
        for name, motor in loaded.items():
            raw = 2047 + deltas[name]
            if name == "gripper":
                expected = (raw - motor.range_min) / (motor.range_max - motor.range_min) * 100
            else:
                expected = (raw - (motor.range_min + motor.range_max) / 2) * 360 / 4096
            assert readings[name] == pytest.approx(expected)
        assert readings["elbow_flex"] == pytest.approx(409 * 360 / 4096)  # centered range
        assert readings["gripper"] == pytest.approx(700 / 1400 * 100)

        # Normalized targets come back as the same normalized readings after motion.
        targets = {name: -20.0 for name in CENTERS} | {"gripper": 25.0}
        bus.enable_torque()
        bus.sync_write("Goal_Position", normalizer.unnormalize(targets))
        deadline = time.monotonic() + 30
        while any(bus.sync_read("Moving").values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        reached = normalizer.normalize(bus.sync_read("Present_Position"))
        for name, target in targets.items():
            assert reached[name] == pytest.approx(target, abs=360 / 4096)


def test_record_ranges_rejects_joints_that_did_not_move():
    with emulated_arm() as emulator, bus_of(emulator) as bus:
        stop = scripted_hand(emulator, [{"gripper": 300}])
        with pytest.raises(CalibrationError, match="shoulder_pan.*wrist_roll"):
            record_ranges_of_motion(bus, stop=stop)
        with pytest.raises(CalibrationError, match="gripper"):
            record_ranges_of_motion(bus, ["gripper"], duration_s=0.05)


def test_record_ranges_needs_a_stop():
    with pytest.raises(ValueError):
        record_ranges_of_motion(FeetechBus("/dev/null", SO101_MOTORS))


def test_write_calibration_checks_motor_ids(tmp_path):
    wrong = {name: MotorCalibration(i + 10, 0, 0, 0, 4095) for name, i in SO101_MOTORS.items()}
    with pytest.raises(CalibrationError, match="shoulder_pan"):
        write_calibration(FeetechBus("/dev/null", SO101_MOTORS), wrong)


def test_normalizer_clamps_and_reverses():
    calibration = {
        "elbow_flex": MotorCalibration(3, 0, 0, 1000, 3000),
        "wrist_flex": MotorCalibration(4, 1, 0, 1000, 3000),
        "gripper": MotorCalibration(6, 0, 0, 2000, 3000),
    }
    normalizer = Normalizer(calibration)
    assert normalizer.normalize({"elbow_flex": 2000, "gripper": 2250}) == {
        "elbow_flex": 0.0,
        "gripper": 25.0,
    }
    assert normalizer.normalize({"wrist_flex": 2512})["wrist_flex"] == pytest.approx(-45.0)
    assert normalizer.unnormalize({"wrist_flex": -45.0}) == {"wrist_flex": 2512}
    assert normalizer.unnormalize({"elbow_flex": 90.0}) == {"elbow_flex": 3000}  # 3024 clamped
    assert normalizer.unnormalize({"elbow_flex": -90.0}) == {"elbow_flex": 1000}
    assert normalizer.unnormalize({"gripper": 150.0}) == {"gripper": 3000}
    assert normalizer.unnormalize({"gripper": 50.0}) == {"gripper": 2500}
    for degrees in (-30.0, 0.0, 12.5, 60.0):
        raw = normalizer.unnormalize({"elbow_flex": degrees})
        assert normalizer.normalize(raw)["elbow_flex"] == pytest.approx(degrees, abs=360 / 4096)
    with pytest.raises(CalibrationError):
        Normalizer({"gripper": MotorCalibration(6, 0, 0, 2000, 2000)})
