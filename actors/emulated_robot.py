"""An emulated SO-101 workcell: follower and leader arms that speak the real servo protocol.

Each arm is an `STS3215Emulator` (six servos on a pseudo-terminal) that the real driver code
(`FeetechBus`, `FollowerArm`, `LeaderArm`) opens like a USB serial adapter. The follower is
coupled to the simulator: whenever its servos move, the simulated arm takes their positions, so
commanding the emulated arm moves the simulated arm, what it grasps and what its cameras show.
The leader is moved by a simulated hand: `move_leader` (a test or a script), or the built-in
hand that drives it like an expert operator would (`hand="expert"`).

The emulated arms' physics: arm joint encoder = 2048 + degrees * 4096 / 360 (degrees of the
simulator's joints, 0 = the URDF zero pose), gripper encoder linear from `GRIPPER_COUNTS[0]`
(closed, 0) to `GRIPPER_COUNTS[1]` (open, 100). `EMULATED_CALIBRATION` is the calibration that
`flywheel robot calibrate` records on them, used when no calibration file is given.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from actors.feetech.bus import SO101_MOTORS
from actors.feetech.calibration import MotorCalibration
from actors.feetech.emulator import STS3215Emulator
from pipelines.simulator import SO101Env
from pipelines.simulator import kinematics as kin
from pipelines.simulator.controllers import Operator, make_controller
from pipelines.simulator.render import Renderer

REPLY_TIMEOUT_MS = 1000.0
"""Reply timeout for a bus on the emulated arms (`FeetechBus(timeout_ms=...)`, the arms'
`timeout_ms`). Their servos are threads on a shared CPU, not hardware that answers within a
millisecond: on a busy machine a reply can take a few hundred ms, and one that came after its
timeout would be read as the answer to the next request (the protocol has no sequence numbers).
A timeout only costs time when a servo is dead, which on the emulator a test does on purpose."""

COUNTS_PER_DEGREE = 4096 / 360
GRIPPER_COUNTS = (1500, 2600)
IDS = list(SO101_MOTORS.values())


def encoders_from_joints(joints: np.ndarray) -> dict[int, int]:
    """Simulator joints (degrees, gripper 0-100) -> encoder counts per servo ID."""
    joints = np.asarray(joints, dtype=np.float64)
    counts = 2048 + joints[:5] * COUNTS_PER_DEGREE
    low, high = GRIPPER_COUNTS
    gripper = low + joints[5] / 100.0 * (high - low)
    return {i: int(round(c)) for i, c in zip(IDS, [*counts, gripper], strict=True)}


def joints_from_encoders(counts: dict[int, int]) -> np.ndarray:
    arm = np.array([(counts[i] - 2048) / COUNTS_PER_DEGREE for i in IDS[:5]])
    low, high = GRIPPER_COUNTS
    gripper = (counts[IDS[5]] - low) / (high - low) * 100.0
    return np.r_[arm, gripper]


def _emulated_calibration() -> dict[str, MotorCalibration]:
    cal = {}
    for k, (name, motor_id) in enumerate(SO101_MOTORS.items()):
        if name == "gripper":
            low, high = GRIPPER_COUNTS
        else:
            half = int(round(kin.JOINT_LIMITS_HIGH[k] * COUNTS_PER_DEGREE))
            low, high = 2048 - half, 2048 + half
        cal[name] = MotorCalibration(motor_id, 0, 0, low, high)
    return cal


EMULATED_CALIBRATION = _emulated_calibration()


class EmulatedSO101:
    """Follower + leader emulators and the simulated world they live in (see module docstring).

    Thread-safe; also usable as a Ray actor (`ray.remote(EmulatedSO101)`), so that arm actors
    open its ports and camera actors render its world from other processes.
    """

    def __init__(
        self,
        task: str = "reach_grasp",
        seed: int = 0,
        image_size: int = 128,
        hand: str | None = None,
        hand_hz: float = 10.0,
        servo_speed: float = 3000.0,
    ):
        """`servo_speed`: how fast the emulated servos move to their goals (counts/s)."""
        self._lock = threading.RLock()
        self.env = SO101Env(task, image_size=image_size, render_images=False)
        self.env.reset(seed=seed)
        self.world = self.env.world
        self.renderer = Renderer(image_size)
        home = encoders_from_joints(self.world.joints)
        self._last_sync = time.monotonic()
        self.follower = STS3215Emulator(
            IDS, speed=servo_speed, initial_positions=home, on_update=self._sync
        )
        self.leader = STS3215Emulator(IDS, speed=servo_speed, initial_positions=home)
        self.follower.start()
        self.leader.start()
        self._stop = threading.Event()
        self._hand: threading.Thread | None = None
        self._operator = None
        if hand is not None:
            self.start_hand(hand, hand_hz, seed)

    # ------------------------------------------------------------------ the coupling

    def _sync(self, positions: dict[int, int]) -> None:
        """Follower servos moved: the simulated arm takes their positions."""
        with self._lock:
            now = time.monotonic()
            self.world.set_joints(joints_from_encoders(positions))
            self.world.step(now - self._last_sync)  # joints stay; a released cube falls
            self._last_sync = now

    def ports(self) -> dict[str, str]:
        return {"follower": self.follower.port, "leader": self.leader.port}

    def render(self, camera: str) -> np.ndarray:
        """RGB image of camera "front" or "wrist" (or `observation.images.<name>`)."""
        name = camera.rsplit(".", 1)[-1]
        with self._lock:
            return self.renderer.render(self.world)[name]

    def state(self) -> dict:
        with self._lock:
            return {
                "joints": self.world.joints.copy(),
                "cube_position": self.world.cube_position.copy(),
                "held": bool(self.world.held),
                "progress": float(self.world.progress()),
                "success": bool(self.world.success()),
            }

    def reset(self, seed: int) -> None:
        """A new cube placement; the arms stay where they are."""
        with self._lock:
            joints = self.world.joints.copy()
            self.world.reset(seed=seed)
            self.world.set_joints(joints)
            if self._operator is not None:
                self._operator.reset(seed)

    # ------------------------------------------------------------------ the simulated hand

    def move_leader(self, joints: np.ndarray) -> None:
        """The hand puts the leader arm at `joints` (degrees, gripper 0-100)."""
        for servo_id, count in encoders_from_joints(kin.clip_joints(joints)).items():
            self.leader.set_position(servo_id, count)

    def leader_joints(self) -> np.ndarray:
        return joints_from_encoders(self.leader.positions())

    def start_hand(self, kind: str = "expert", hz: float = 10.0, seed: int = 0) -> None:
        """A simulated operator moving the leader: the expert controller, acting on the world."""
        if self._hand is not None:
            raise RuntimeError("the hand is already moving the leader")
        expert = make_controller(kind, self.env, seed=seed)
        max_move = 180.0 / hz  # the hand moves the joints at up to 180 deg/s

        def move() -> None:
            while not self._stop.wait(1.0 / hz):
                with self._lock:
                    target = np.asarray(expert(None, None), dtype=np.float64)
                now = self.leader_joints()
                step = np.clip(target - now, -max_move, max_move)
                step[5] = target[5] - now[5]
                self.move_leader(now + step)

        self._hand = threading.Thread(target=move, name="simulated-hand", daemon=True)
        self._hand.start()

    def start_operator(self, seed: int = 0, hz: float = 10.0, grab_deg: float = 12.0) -> None:
        """A simulated HIL-SERL operator's hand on the leader
        (`pipelines.simulator.controllers.Operator`).

        It watches what the follower does to the world at `hz`; when the policy drifts it takes
        hold of the leader (pushes it `grab_deg` on wrist_roll, beyond `LeaderArm`'s grab
        threshold, until the leader's torque goes off) and moves it as the expert would, until
        it hands back; then it lets go (the leader stays still, which ends the intervention).
        """
        if self._hand is not None:
            raise RuntimeError("the hand is already moving the leader")
        self._operator = Operator(self.env, lambda obs, info: None, seed=seed)
        operator = self._operator
        substeps = 5
        max_move = 180.0 / (hz * substeps)
        low, high = kin.JOINT_LIMITS_LOW[4], kin.JOINT_LIMITS_HIGH[4]

        def move() -> None:
            target, tick = None, 0
            while not self._stop.wait(1.0 / (hz * substeps)):
                if tick % substeps == 0:
                    with self._lock:
                        action, active = operator(None, {"progress": self.world.progress()})
                    target = np.asarray(action, dtype=np.float64) if active else None
                tick += 1
                if target is None:
                    continue
                now = self.leader_joints()
                goal = target.copy()
                if self.leader.torque_enabled(IDS[0]):  # still held by its motors: grab it
                    roll = now[4] + grab_deg
                    goal[4] = roll if roll <= high else max(now[4] - grab_deg, low)
                    self.move_leader(goal)
                    continue
                step = np.clip(goal - now, -max_move, max_move)
                step[5] = goal[5] - now[5]
                self.move_leader(now + step)

        self._hand = threading.Thread(target=move, name="simulated-operator", daemon=True)
        self._hand.start()

    def operator_state(self) -> dict:
        op = self._operator
        if op is None:
            return {}
        return {"active": op.active, "takeovers": op.takeovers, "steps": op.steps}

    def close(self) -> None:
        self._stop.set()
        if self._hand is not None:
            self._hand.join(timeout=2)
        self.follower.stop()
        self.leader.stop()
