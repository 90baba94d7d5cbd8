"""FollowerArm / LeaderArm with the real SDK against the emulated SO-101, faults included."""

import numpy as np
import pytest

from actors.arm import ArmError, FollowerArm, LeaderArm
from actors.emulated_robot import (
    EMULATED_CALIBRATION,
    REPLY_TIMEOUT_MS,
    EmulatedSO101,
    encoders_from_joints,
)
from actors.feetech.bus import SO101_MOTORS, BusError
from tests.helpers import wait_until


@pytest.fixture()
def robot():
    r = EmulatedSO101(seed=4)
    yield r
    r.close()


def follower_arm(robot, **options) -> FollowerArm:
    """The real driver on the emulated follower's port."""
    return FollowerArm(
        robot.ports()["follower"], EMULATED_CALIBRATION, timeout_ms=REPLY_TIMEOUT_MS, **options
    )


def test_commanded_positions_are_reached_and_move_the_simulated_arm(robot):
    arm = follower_arm(robot, max_step=90)
    try:
        start = arm.read()
        assert np.allclose(start, robot.state()["joints"], atol=0.2)
        goal = np.array([20.0, -30.0, 40.0, 60.0, -15.0, 70.0])
        sent = arm.command(goal)
        assert np.allclose(sent, goal, atol=1e-4)
        assert wait_until(lambda: np.allclose(arm.read(), goal, atol=0.2))
        # the follower's servos carried the simulated arm along
        assert wait_until(lambda: np.allclose(robot.state()["joints"], goal, atol=0.3))
    finally:
        arm.shutdown()


def test_goals_are_clamped_to_range_and_step(robot):
    arm = follower_arm(robot, max_step=5.0)
    try:
        now = arm.read()
        sent = arm.command(now + np.array([30.0, -30.0, 0, 0, 0, 0]))
        assert np.allclose(sent[:2], now[:2] + [5.0, -5.0], atol=1e-3)
        # far beyond the calibrated range: clamped to it (shoulder_pan range is +-110 deg),
        # command after command, until the arm stands at the limit
        assert arm.high[0] == pytest.approx(110.0, abs=0.2)
        far = np.array([500.0, 0, 0, 0, 0, 50.0])

        def step_toward_far() -> bool:
            sent = arm.command(far)
            assert sent[0] <= arm.high[0] + 1e-6
            return sent[0] == pytest.approx(arm.high[0], abs=1e-3)

        assert wait_until(step_toward_far)
        assert wait_until(lambda: arm.read()[0] == pytest.approx(arm.high[0], abs=0.2))
    finally:
        arm.shutdown()


def test_a_servo_that_stops_answering_ends_in_torque_off_and_names_it(robot):
    arm = follower_arm(robot, retries=2)
    follower = robot.follower
    assert all(follower.torque_enabled(i) for i in range(1, 7))
    follower.kill(3)
    with pytest.raises(BusError, match="elbow_flex"):
        arm.command(arm.low + 1)
    assert not any(follower.torque_enabled(i) for i in (1, 2, 4, 5, 6))
    with pytest.raises(ArmError, match="stopped"):
        arm.command(arm.low + 1)
    arm.shutdown()


def test_a_dropped_reply_is_retried_invisibly(robot):
    arm = follower_arm(robot)
    try:
        before = arm.bus.retry_count
        robot.follower.drop_replies(2, 1)
        assert np.allclose(arm.read(), robot.state()["joints"], atol=0.2)
        assert arm.bus.retry_count == before + 1
    finally:
        arm.shutdown()


def test_a_stalled_control_loop_trips_the_watchdog():
    # Slow servos: the commanded move takes about half a minute, so the stall is caught in the
    # middle of it however late the watchdog thread gets to run on a busy machine.
    robot = EmulatedSO101(seed=4, servo_speed=40.0)
    arm = follower_arm(robot, max_step=120, watchdog_s=0.1)
    try:
        start = arm.read()
        target = start + np.array([-start[0] - 100.0, 0, 0, 0, 0, 0])  # pan to -100 degrees
        arm.command(target)  # a long move ... and then no more commands
        assert wait_until(lambda: arm.watchdog_trips == 1)

        def goals() -> np.ndarray:  # the servos' goals, in degrees
            raw = {n: robot.follower.goal_position(i) for n, i in SO101_MOTORS.items()}
            normalized = arm.normalizer.normalize(raw)
            return np.array([normalized[n] for n in arm.names])

        def at_rest() -> bool:
            return not any(robot.follower.read_register(i, "Moving") for i in SO101_MOTORS.values())

        assert wait_until(at_rest)
        held = arm.read()
        assert np.allclose(goals(), held, atol=0.1)  # it holds where it stopped ...
        assert abs(held[0] - target[0]) > 5  # ... short of the goal it was given
        assert all(robot.follower.torque_enabled(i) for i in SO101_MOTORS.values())
        checks = arm.watchdog_checks
        assert wait_until(lambda: arm.watchdog_checks >= checks + 5)  # still stalled, and ...
        assert arm.watchdog_trips == 1  # ... once per stall
        assert np.allclose(arm.read(), held, atol=0.2) and at_rest()
        arm.command(held)  # the loop comes back, then stalls again: a second trip
        assert wait_until(lambda: arm.watchdog_trips == 2)
        checks = arm.watchdog_checks
        assert wait_until(lambda: arm.watchdog_checks >= checks + 5)
        assert arm.status()["watchdog_trips"] == 2
    finally:
        arm.shutdown()
        robot.close()


def test_emergency_stop_and_shutdown_turn_torque_off(robot):
    arm = follower_arm(robot)
    arm.estop()
    assert not any(robot.follower.torque_enabled(i) for i in range(1, 7))
    with pytest.raises(ArmError):
        arm.command(arm.read())
    arm.shutdown()


def test_leader_follows_then_intervention_when_taken_hold_of(robot):
    leader = LeaderArm(
        robot.ports()["leader"], EMULATED_CALIBRATION, timeout_ms=REPLY_TIMEOUT_MS, grab_threshold=8
    )
    try:
        pose = np.array([10.0, -20.0, 30.0, 70.0, 0.0, 30.0])
        leader.follow(pose)  # a policy drives: the leader tracks the follower, torque on
        assert all(robot.leader.torque_enabled(i) for i in range(1, 7))
        assert wait_until(lambda: np.allclose(leader.read(), pose, atol=0.3))
        assert leader.poll_intervention() is False
        # the operator takes hold and pushes the elbow 20 degrees
        moved = pose + np.array([0, 0, 20.0, 0, 0, 0])
        for servo, count in encoders_from_joints(moved).items():
            robot.leader.set_position(servo, count)
        assert leader.poll_intervention() is True
        assert not any(robot.leader.torque_enabled(i) for i in range(1, 7))
        leader.end_intervention(pose)
        assert all(robot.leader.torque_enabled(i) for i in range(1, 7))
    finally:
        leader.shutdown()


def test_handshake_names_a_missing_motor(robot):
    robot.follower.kill(6)
    with pytest.raises(BusError, match=r"gripper \(id 6\): no answer"):
        FollowerArm(
            robot.ports()["follower"], EMULATED_CALIBRATION, timeout_ms=REPLY_TIMEOUT_MS, retries=1
        )
