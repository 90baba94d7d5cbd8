"""The SO-101 follower and leader arms on a Feetech bus, in the user's units.

Positions are `JOINTS` order: five joints in degrees and the gripper in 0-100, converted with
the arm's calibration (`actors.feetech.calibration`). `FollowerArm` and `LeaderArm` are plain
classes; `follower_actor` / `leader_actor` run them as Ray actors that Ray restarts when their
process dies (a restarted actor connects and handshakes again in its constructor).

Safety of the follower:

* every goal is clamped to the calibrated range and to `max_step` per command away from where
  the arm is, so a jump in the commands never becomes a jump of the arm;
* a watchdog holds the arm where it is when no command arrives within `watchdog_s`: it writes
  the position it reads as the goal, so the arm comes to rest there, and it trips once per
  stall (the next command ends the stall);
* torque goes off on `shutdown`, on `estop`, and on a bus error that retries could not mend
  (the error names the motor).

The leader's intervention rule (HIL-SERL): while a policy drives, the leader follows the
follower with torque on (`follow`), so the operator's hand finds the leader where the robot is.
When the operator takes hold of it and pushes it more than `grab_threshold` degrees away from
where it is being held, `poll_intervention` turns the leader's torque off and reports an
intervention: from then on the follower follows the leader. `end_intervention` hands control
back to the policy.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

import numpy as np

from actors.feetech.bus import SO101_MOTORS, BusError, FeetechBus
from actors.feetech.calibration import MotorCalibration, Normalizer, write_calibration

JOINTS = tuple(SO101_MOTORS)


class ArmError(RuntimeError):
    pass


class _Arm:
    def __init__(
        self,
        port: str,
        calibration: Mapping[str, MotorCalibration],
        motors: Mapping[str, int] = SO101_MOTORS,
        retries: int = 3,
        timeout_ms: float = 50.0,
    ):
        self.port = port
        self.bus = FeetechBus(port, dict(motors), retries=retries, timeout_ms=timeout_ms)
        self.bus.connect()  # pings every motor, checks it is an STS3215: names any missing one
        write_calibration(self.bus, calibration)  # torque off, homing offsets and limits
        self.normalizer = Normalizer(calibration)
        self.names = list(motors)
        self.low = np.array([self._user(n, calibration[n].range_min) for n in self.names])
        self.high = np.array([self._user(n, calibration[n].range_max) for n in self.names])
        self.low, self.high = np.minimum(self.low, self.high), np.maximum(self.low, self.high)

    def _user(self, name: str, raw: int) -> float:
        return self.normalizer.normalize({name: raw})[name]

    def read(self) -> np.ndarray:
        """Present positions (degrees, gripper 0-100), float32."""
        raw = self.bus.sync_read("Present_Position", self.names)
        pos = self.normalizer.normalize(raw)
        return np.array([pos[n] for n in self.names], dtype=np.float32)

    def _write_goal(self, goal: np.ndarray) -> None:
        raw = self.normalizer.unnormalize(dict(zip(self.names, goal.tolist(), strict=True)))
        self.bus.sync_write("Goal_Position", raw)

    def status(self) -> dict:
        return {"port": self.port, "retries": self.bus.retry_count, "pid": os.getpid()}


class FollowerArm(_Arm):
    """The arm that acts (see the module docstring for its safety rules)."""

    def __init__(self, *args, max_step: float = 10.0, watchdog_s: float = 0.5, **bus):
        """`_Arm`'s arguments (port, calibration, motors, retries, timeout_ms), and the
        follower's safety settings."""
        super().__init__(*args, **bus)
        self.max_step = float(max_step)
        self.watchdog_s = float(watchdog_s)
        self.watchdog_trips = 0
        self.watchdog_checks = 0  # times the watchdog looked (a test waits on it, not on time)
        self.stopped = False
        self._lock = threading.Lock()
        self._last_command = time.monotonic()
        self._holding = True
        with self._lock:
            self._write_goal(self.read())  # hold where it is, then power up
            self.bus.enable_torque()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._watchdog.start()

    def command(self, goal: np.ndarray) -> np.ndarray:
        """Move toward `goal`; returns the goal actually sent (clamped to range and step)."""
        goal = np.asarray(goal, dtype=np.float64)
        with self._lock:
            if self.stopped:
                raise ArmError(f"follower on {self.port}: stopped (emergency stop or bus error)")
            try:
                now = self.read().astype(np.float64)
                sent = np.clip(goal, self.low, self.high)
                sent = np.clip(sent, now - self.max_step, now + self.max_step)
                self._write_goal(sent)
            except BusError:
                self._fail()
                raise
            self._last_command = time.monotonic()
            self._holding = False
        return sent.astype(np.float32)

    def read(self) -> np.ndarray:
        try:
            return super().read()
        except BusError:
            self._fail()
            raise

    def _fail(self) -> None:
        self.stopped = True
        self.bus.torque_off_best_effort()

    def _watch(self) -> None:
        while not self._stop.wait(self.watchdog_s / 4):
            with self._lock:
                self._hold_if_stalled()
                self.watchdog_checks += 1  # counted once the check is complete

    def _hold_if_stalled(self) -> None:
        """No command for `watchdog_s`: hold where the arm is (once per stall)."""
        late = time.monotonic() - self._last_command > self.watchdog_s
        if self.stopped or self._holding or not late:
            return
        try:
            self._write_goal(self.read())  # hold position
            self.watchdog_trips += 1
            self._holding = True
        except BusError:
            self._fail()

    def estop(self) -> None:
        """Emergency stop: torque off now; further commands are refused."""
        with self._lock:
            self.stopped = True
            self.bus.torque_off_best_effort()

    def shutdown(self) -> None:
        self._stop.set()
        self._watchdog.join(timeout=2)
        with self._lock:
            self.stopped = True
            self.bus.torque_off_best_effort()
            self.bus.disconnect()

    def status(self) -> dict:
        return {**super().status(), "watchdog_trips": self.watchdog_trips, "stopped": self.stopped}


class LeaderArm(_Arm):
    """The arm the operator moves (see the module docstring for the intervention rule)."""

    def __init__(self, *args, grab_threshold: float = 8.0, **bus):
        """`_Arm`'s arguments (port, calibration, motors, retries, timeout_ms), and the
        leader's grab threshold (degrees)."""
        super().__init__(*args, **bus)
        self.grab_threshold = float(grab_threshold)
        self.following = False
        self._held_at: np.ndarray | None = None

    def follow(self, follower_positions: np.ndarray) -> None:
        """Hold the leader where the follower is (torque on) while a policy drives."""
        goal = np.clip(np.asarray(follower_positions, dtype=np.float64), self.low, self.high)
        if not self.following:
            self.bus.enable_torque()  # holds where it is; then the goal moves it
            self.following = True
        self._write_goal(goal)
        self._held_at = goal

    def poll_intervention(self) -> bool:
        """True once the operator has taken hold of the leader (torque then goes off)."""
        if not self.following:
            return True
        error = np.abs(self.read() - self._held_at)
        if float(error.max()) > self.grab_threshold:
            self.bus.disable_torque()
            self.following = False
            return True
        return False

    def end_intervention(self, follower_positions: np.ndarray) -> None:
        self.follow(follower_positions)

    def release(self) -> None:
        """Torque off: the operator moves the leader freely (plain teleoperation)."""
        self.bus.disable_torque()
        self.following = False

    def shutdown(self) -> None:
        self.bus.torque_off_best_effort()
        self.bus.disconnect()


def follower_actor(max_restarts: int = 3, **options):
    """FollowerArm as a Ray actor class; Ray restarts it (re-handshake) if its process dies."""
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=max_restarts, **options)(
        FollowerArm
    )


def leader_actor(max_restarts: int = 3, **options):
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=max_restarts, **options)(
        LeaderArm
    )
