"""`flywheel robot ping` and `flywheel robot calibrate`: one arm's bus, real or emulated.

Without a port both open an `EmulatedSO101` in this process and talk to one of its arms; the
emulated calibration is recorded by `SimHand`, a simulated hand that moves the arm as a person
would. Calibrations are JSON files in LeRobot's schema, one per arm id, where LeRobot keeps them
(`pipelines.dataset.calibration`: read from either of LeRobot's SO-101 type folders, written to
both), or in `--calibration-dir`.
"""

from __future__ import annotations

import threading

import numpy as np

from actors.emulated_robot import EmulatedSO101, encoders_from_joints
from actors.feetech.bus import SO101_MOTORS, FeetechBus
from actors.feetech.calibration import (
    Normalizer,
    finish_calibration,
    record_ranges_of_motion,
    save_arm_calibration,
    set_half_turn_homings,
)
from actors.so101.build import bus_options, calibration_of
from actors.so101.config import CalibrateConfig, PingConfig, RobotError
from pipelines.dataset.calibration import check_arm_id
from pipelines.simulator import kinematics as kin


def ping(config: PingConfig) -> int:
    """Handshake with every servo of the arm on `config.port` (or an emulated one), print its
    models and positions (in the user's units too, given a calibration)."""
    robot = None
    port = config.port
    if port is None:
        robot = EmulatedSO101()
        port = robot.ports()["follower"]
        print(f"emulated follower arm on {port}")
    emulated = robot is not None
    try:
        with FeetechBus(port, SO101_MOTORS, **bus_options(emulated)) as bus:
            models = bus.check_motors()
            raw = bus.sync_read("Present_Position")
            norm = None
            if config.arm_id or emulated:
                role = "leader" if config.leader else "follower"
                cal = calibration_of(config.arm_id, config.calibration_dir, emulated, role)
                norm = Normalizer(cal).normalize(raw)
            for name, motor_id in SO101_MOTORS.items():
                unit = "%" if name == "gripper" else "deg"
                value = "" if norm is None else f"  {norm[name]:8.2f} {unit}"
                print(
                    f"  {name:<14} id {motor_id}  model {models[name]}  "
                    f"position {raw[name]:5d}{value}"
                )
    finally:
        if robot is not None:
            robot.close()
    return 0


def calibrate(config: CalibrateConfig) -> int:
    """Record the arm's homing offsets and ranges of motion and save them under its id (where
    LeRobot keeps them, or in --calibration-dir): a person at a real arm presses Enter; the
    emulated arm is moved by a `SimHand`."""
    check_arm_id(config.arm_id)  # before the arm is touched
    robot = None
    port = config.port
    side = "leader" if config.leader else "follower"
    if port is None:
        robot = EmulatedSO101()
        port = robot.ports()[side]
        print(f"emulated {side} arm on {port}")
    try:
        with FeetechBus(port, SO101_MOTORS, **bus_options(robot is not None)) as bus:
            bus.disable_torque()
            if robot is None:
                _enter("Move the arm to the middle of its range of motion, then press Enter. ")
            else:
                hand = SimHand(robot, config.leader)
                hand.hold_middle()
            offsets = set_half_turn_homings(bus)
            print("Move every joint through its whole range of motion; press Enter when done.")
            stop, closed = threading.Event(), []
            if robot is None:

                def wait():
                    try:
                        _enter("")
                    except RobotError as e:
                        closed.append(e)
                    stop.set()

                threading.Thread(target=wait, daemon=True).start()
            else:
                stop = hand.sweep()
            mins, maxes = record_ranges_of_motion(bus, stop=stop)
            if closed:
                raise closed[0]
            cal = finish_calibration(bus, offsets, mins, maxes, full_turn_motors=("wrist_roll",))
        paths = save_arm_calibration(cal, side, config.arm_id, config.calibration_dir)
    finally:
        if robot is not None:
            robot.close()
    for name, m in cal.items():
        print(
            f"  {name:<14} homing offset {m.homing_offset:5d}  range {m.range_min}..{m.range_max}"
        )
    print(f"Calibration of arm {config.arm_id!r} saved to {', '.join(map(str, paths))}")
    return 0


def _enter(prompt: str) -> None:
    """Wait for Enter from the person at the arm; a closed input is a RobotError."""
    try:
        input(prompt)
    except EOFError:
        raise RobotError(
            "calibrate: standard input closed; calibrating a real arm needs a person at the "
            "terminal to press Enter (nothing was saved)"
        ) from None


class SimHand:
    """The simulated hand for `calibrate --sim`: holds the arm mid-range, or sweeps each joint.

    The sweep is driven by the range recorder, one pose per poll: `sweep()` is the recorder's
    `stop` callback, called after every poll, which moves the arm to the next pose (or says the
    sweep is over). Every pose, the extremes included, is therefore seen by a poll however late
    the polls come; a hand on its own clock would lose any pose held for less than a poll period.
    """

    STEPS = (5, 10, 5)  # poses from the middle to the low limit, from low to high, back

    def __init__(self, robot: EmulatedSO101, leader: bool):
        self.emulator = robot.leader if leader else robot.follower
        self.middle = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 50.0])

    def _put(self, joints) -> None:
        for servo_id, count in encoders_from_joints(joints).items():
            self.emulator.set_position(servo_id, count)

    def hold_middle(self) -> None:
        self._put(self.middle)

    def poses(self):
        """Each joint in turn, middle -> low limit -> high limit -> middle, the others mid-range."""
        to_low, across, back = self.STEPS
        for k in range(len(self.middle)):
            low, high, middle = kin.JOINT_LIMITS_LOW[k], kin.JOINT_LIMITS_HIGH[k], self.middle[k]
            for value in np.r_[
                np.linspace(middle, low, to_low + 1)[1:],
                np.linspace(low, high, across + 1)[1:],
                np.linspace(high, middle, back + 1)[1:],
            ]:
                pose = self.middle.copy()
                pose[k] = value
                yield pose

    def sweep(self):
        """A `stop` callback for `record_ranges_of_motion`: the next pose per call, then True."""
        poses = self.poses()

        def next_pose_or_done() -> bool:
            pose = next(poses, None)
            if pose is None:
                return True
            self._put(pose)
            return False

        return next_pose_or_done
