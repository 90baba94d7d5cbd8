"""Kinematic SO-101 tabletop world: arm, one cube, a grasp model and task progress.

No physics engine. Joints move toward their targets at a bounded speed (STS3215-like, 180 deg/s;
the gripper's 0..100 range spans the jaw's 110 deg, so 164 units/s); the five arm joints move in
sync, on a straight line in joint space, the gripper on its own. The cube is either resting on
the table, held (rigidly carried with the gripper link), or falling: on release it falls under
gravity, integrated in the world's substeps (a 5 cm drop takes ~0.1 s), and lands flat, keeping its
yaw. Arm links do not collide with the cube or the table (the tool point is kept above the table
only by the env's end-effector workspace); the cube never goes below the table.

Grasp: when, within one substep, the fingertip gap shrinks through the cube's width while the cube
centre lies within ``attach_tolerance`` of the point between the fingertips, the cube is attached;
from then on the jaws stall on it (the gripper reading stays at the contact value) until the
gripper opens ``release_margin`` past contact. Closing with nothing between the jaws, or closing
before arriving (jaws already narrower than the cube), attaches nothing.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.simulator import kinematics as kin
from pipelines.simulator.tasks import DEFAULT_TASK, get_task

TABLE_X = (-0.12, 0.45)  # table extent (m), world frame
TABLE_Y = (-0.30, 0.30)
GRAVITY = 9.81
JOINT_SPEED_DEG_S = 180.0  # STS3215 servo speed under light load
# Home: tool 16 cm in front of the pan axis, 10 cm above the table, pointing down; gripper shut.
HOME_JOINTS = np.array([0.0, -12.7, 17.4, 85.3, 0.0, 10.0])
# Cube spawn region (yaw uniform in [0, 90) deg): distance from the pan axis (m), azimuth (deg).
SPAWN_RADIUS = (0.15, 0.24)
SPAWN_AZIMUTH_DEG = (-40.0, 40.0)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SO101World:
    """The arm, the table and a cube; see the module docstring for the model.

    Joint values are degrees for the five arm joints and 0..100 for the gripper
    (``kinematics.JOINT_NAMES``); positions are metres in the world frame (table at z = 0).
    """

    def __init__(
        self,
        task: str = DEFAULT_TASK,
        seed: int | np.random.Generator | None = None,
        *,
        cube_size: float = 0.025,
        lift_height: float = 0.05,
        joint_speed: float = JOINT_SPEED_DEG_S,
        substep: float = 0.025,
        attach_tolerance: float = 0.012,
        release_margin: float = 5.0,
        reach_tolerance: float = 0.015,
        reach_scale: float = 0.25,
        home_noise_deg: float = 3.0,
    ):
        self.spec = get_task(task)
        self.task = task
        self.stages = self.spec.stages
        self.cube_size = cube_size
        self.lift_height = lift_height
        self.substep = substep
        self.attach_tolerance = attach_tolerance
        self.release_margin = release_margin
        self.reach_tolerance = reach_tolerance
        self.reach_scale = reach_scale
        self.home_noise_deg = home_noise_deg
        gripper_speed = joint_speed / math.degrees(np.ptp(kin.JAW_LIMITS_RAD)) * 100.0
        self.joint_speed = np.array([joint_speed] * kin.ARM_JOINTS + [gripper_speed])
        self.contact_gripper = kin.gripper_for_gap(cube_size)  # jaws touch the cube (~24.5)
        self.cube_rest_z = cube_size / 2.0
        self.reset(seed)

    # ----------------------------------------------------------------------------------- state
    def reset(self, seed: int | np.random.Generator | None = None) -> None:
        """Arm near home (small joint noise), cube at a random reachable pose on the table."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        noise = rng.uniform(-self.home_noise_deg, self.home_noise_deg, size=6)
        noise[5] = 0.0
        self._joints = kin.clip_joints(HOME_JOINTS + noise)
        self._targets = self._joints.copy()
        radius = rng.uniform(*SPAWN_RADIUS)
        azimuth = math.radians(rng.uniform(*SPAWN_AZIMUTH_DEG))
        yaw = rng.uniform(0.0, math.pi / 2)
        self.cube_position = np.array(
            [radius * math.cos(azimuth), radius * math.sin(azimuth), self.cube_rest_z]
        )
        self.cube_rotation = _yaw_matrix(yaw)
        self.cube_spawn = self.cube_position.copy()
        self.held = False
        self._cube_velocity_z = 0.0
        self._cube_in_gripper: tuple[np.ndarray, np.ndarray] | None = None
        self._pose: kin.ArmPose | None = None
        self.time = 0.0

    @property
    def joints(self) -> np.ndarray:
        """Current joint values (copy)."""
        return self._joints.copy()

    @property
    def joint_targets(self) -> np.ndarray:
        """Current joint targets (copy)."""
        return self._targets.copy()

    @property
    def gripper(self) -> float:
        """Gripper opening, 0 (closed) .. 100 (open)."""
        return float(self._joints[5])

    @property
    def pose(self) -> kin.ArmPose:
        """Forward kinematics of the current joints (cached)."""
        if self._pose is None:
            self._pose = kin.forward_kinematics(self._joints)
        return self._pose

    @property
    def tool_position(self) -> np.ndarray:
        """Tool point (the URDF ``gripperframe``), world frame (copy)."""
        return self.pose.tool_position.copy()

    @property
    def jaw_gap(self) -> float:
        """Distance between the fingertips (m)."""
        return float(kin.jaw_gap(self._joints[5]))

    @property
    def cube_yaw(self) -> float:
        """Cube yaw (rad) about the world z axis."""
        return math.atan2(self.cube_rotation[1, 0], self.cube_rotation[0, 0])

    @property
    def cube_falling(self) -> bool:
        return not self.held and self.cube_position[2] > self.cube_rest_z + 1e-9

    # ------------------------------------------------------------------------------- commands
    def set_joint_targets(self, targets_deg: np.ndarray) -> None:
        """Joint targets (6 values), clipped to the joint limits; reached at bounded speed."""
        self._targets = kin.clip_joints(np.asarray(targets_deg, dtype=np.float64))

    def set_joints(self, joints_deg: np.ndarray) -> None:
        """Teleport the joints (e.g. mirroring an external arm); targets follow. Grasps apply."""
        previous_gripper = self._joints[5]
        self._joints = kin.clip_joints(np.asarray(joints_deg, dtype=np.float64))
        self._targets = self._joints.copy()
        self._pose = None
        self._update_grasp(previous_gripper)
        self._carry_cube()

    def step(self, dt: float) -> None:
        """Advance ``dt`` seconds in substeps of at most ``self.substep``."""
        count = max(1, math.ceil(dt / self.substep - 1e-9))
        h = dt / count
        max_move = self.joint_speed * h
        for _ in range(count):
            previous_gripper = self._joints[5]
            self._joints += self._joint_step(max_move)
            self._pose = None
            self._update_grasp(previous_gripper)
            self._fall(h)
        self._carry_cube()
        self.time += dt

    def _joint_step(self, max_move: np.ndarray) -> np.ndarray:
        """Joint motion for one substep: the arm joints move in sync (straight in joint space,
        the slowest-to-arrive joint at full speed); the gripper on its own."""
        delta = self._targets - self._joints
        arm = delta[: kin.ARM_JOINTS]
        worst = float(np.max(np.abs(arm) / max_move[: kin.ARM_JOINTS]))
        if worst > 1.0:
            delta[: kin.ARM_JOINTS] = arm / worst
        delta[5] = min(max(delta[5], -max_move[5]), max_move[5])
        return delta

    # ---------------------------------------------------------------------------------- grasp
    def _update_grasp(self, previous_gripper: float) -> None:
        contact = self.contact_gripper
        gripper = self._joints[5]
        if self.held:
            if gripper > contact + self.release_margin:
                self.held = False
                self._cube_in_gripper = None
                self._cube_velocity_z = 0.0
            elif gripper < contact:
                self._joints[5] = contact  # the jaws stall on the cube
            return
        if self.cube_falling or not previous_gripper > contact >= gripper:
            return
        grip_r, grip_p = self.pose.gripper_rotation, self.pose.gripper_position
        tips = kin.FIXED_TIP_IN_GRIPPER + kin.moving_tip_in_gripper(contact)
        between_tips = grip_r @ (tips / 2.0) + grip_p
        if np.linalg.norm(self.cube_position - between_tips) <= self.attach_tolerance:
            self.held = True
            self._joints[5] = contact
            self._pose = None
            self._cube_in_gripper = (
                grip_r.T @ (self.cube_position - grip_p),
                grip_r.T @ self.cube_rotation,
            )

    def _carry_cube(self) -> None:
        if self._cube_in_gripper is None:
            return
        offset, rotation = self._cube_in_gripper
        pose = self.pose
        self.cube_rotation = pose.gripper_rotation @ rotation
        position = pose.gripper_rotation @ offset + pose.gripper_position
        # Lowest corner above the table: centre z >= half size x sum |R[2, :]|.
        floor = self.cube_size / 2.0 * float(np.abs(self.cube_rotation[2]).sum())
        position[2] = max(position[2], floor)
        self.cube_position = position

    def _fall(self, h: float) -> None:
        if not self.cube_falling:
            return
        self._cube_velocity_z -= GRAVITY * h
        self.cube_position[2] += self._cube_velocity_z * h
        if self.cube_position[2] <= self.cube_rest_z:
            self.cube_position[2] = self.cube_rest_z
            self._cube_velocity_z = 0.0
            self.cube_rotation = _yaw_matrix(self._flat_yaw())

    def _flat_yaw(self) -> float:
        """Yaw of the cube once it lies flat: from its most horizontal axis."""
        axis = int(np.argmin(np.abs(self.cube_rotation[2])))
        return math.atan2(self.cube_rotation[1, axis], self.cube_rotation[0, axis])

    # --------------------------------------------------------------------------- task progress
    @property
    def grasp_distance(self) -> float:
        """Distance (m) from the tool point to the cube centre (the grasp point)."""
        return float(np.linalg.norm(self.tool_position - self.cube_position))

    @property
    def lift(self) -> float:
        """Height (m) the cube is above its resting height."""
        return float(self.cube_position[2] - self.cube_rest_z)

    def success(self) -> bool:
        if not self.spec.lifts:
            return self.held
        return self.held and self.lift >= self.lift_height - 1e-9

    def stage(self) -> int:
        """Index into ``self.stages`` of the stage the task is in now (from the state)."""
        if self.success() or self.held:
            return len(self.stages) - 1
        return 1 if self.grasp_distance <= self.reach_tolerance else 0

    @property
    def stage_name(self) -> str:
        return self.stages[self.stage()]

    def stage_scores(self) -> tuple[float, float, float]:
        """(reach, grasp, lift) scores in [0, 1].

        reach: 1 within ``reach_tolerance`` of the cube centre, falling linearly to 0 at
        ``reach_scale``. grasp: 1 when held; otherwise, at the cube, how far the fingertip gap has
        closed from twice the cube width towards its width (0.8 at most), 0 if the jaws shut past
        the cube without holding it. lift: held cube's height gain over ``lift_height``.
        """
        if self.held:
            return 1.0, 1.0, min(max(self.lift / self.lift_height, 0.0), 1.0)
        distance = self.grasp_distance
        span = self.reach_scale - self.reach_tolerance
        reach = min(max(1.0 - (distance - self.reach_tolerance) / span, 0.0), 1.0)
        grasp = 0.0
        if distance <= self.reach_tolerance:
            gap, size = self.jaw_gap, self.cube_size
            if gap >= size - 0.002:
                grasp = 0.8 * min(max((2.0 * size - gap) / size, 0.0), 1.0)
        return reach, grasp, 0.0

    def progress(self) -> float:
        """Dense task progress in [0, 1]; drops when the arm backs off or the cube slips.

        The task's weights over the stage scores (`tasks.SimTask.progress_weights`): reach_grasp
        = 0.6 reach + 0.4 grasp; pick_lift = 0.45 reach + 0.25 grasp + 0.3 lift.
        """
        if self.success():
            return 1.0
        return self.spec.progress(*self.stage_scores())

    def get_state(self) -> dict[str, object]:
        """Everything that evolves, copied: `set_state` of it restores the world exactly."""
        grip = self._cube_in_gripper
        return {
            "joints": self._joints.copy(),
            "targets": self._targets.copy(),
            "cube_position": self.cube_position.copy(),
            "cube_rotation": self.cube_rotation.copy(),
            "cube_spawn": self.cube_spawn.copy(),
            "held": self.held,
            "cube_velocity_z": self._cube_velocity_z,
            "cube_in_gripper": None if grip is None else (grip[0].copy(), grip[1].copy()),
            "time": self.time,
        }

    def set_state(self, state: dict[str, object]) -> None:
        """Restore a `get_state()` (copies it: the state can be restored again)."""
        grip = state["cube_in_gripper"]
        self._joints = np.array(state["joints"], dtype=np.float64)
        self._targets = np.array(state["targets"], dtype=np.float64)
        self.cube_position = np.array(state["cube_position"], dtype=np.float64)
        self.cube_rotation = np.array(state["cube_rotation"], dtype=np.float64)
        self.cube_spawn = np.array(state["cube_spawn"], dtype=np.float64)
        self.held = bool(state["held"])
        self._cube_velocity_z = float(state["cube_velocity_z"])
        self._cube_in_gripper = None if grip is None else (grip[0].copy(), grip[1].copy())
        self.time = float(state["time"])
        self._pose = None

    def snapshot(self) -> dict[str, object]:
        """Plain copy of the full state (for determinism checks and debugging)."""
        return {
            "joints": self._joints.copy(),
            "targets": self._targets.copy(),
            "cube_position": self.cube_position.copy(),
            "cube_rotation": self.cube_rotation.copy(),
            "held": self.held,
            "time": self.time,
        }
