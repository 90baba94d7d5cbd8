"""SO-101 forward and inverse kinematics (pure numpy).

Geometry from the real arm's URDF: TheRobotStudio/SO-ARM100,
``Simulation/SO101/so101_new_calib.urdf`` (an onshape-to-robot export,
https://github.com/TheRobotStudio/SO-ARM100). Every revolute joint rotates about its local z axis;
a URDF ``rpy`` is fixed-axis roll-pitch-yaw, R = Rz(yaw) @ Ry(pitch) @ Rx(roll).

Units follow the real arm's LeRobot convention: the five arm joints in degrees, mapped directly
onto the URDF angles with the URDF's signs (0 deg = URDF zero pose: upper arm vertical, forearm
and gripper horizontal, pointing forward; no offset: that pose renders fine), and the gripper in
0..100 mapped linearly onto the moving jaw's URDF range -10..100 deg (0 = closed, 100 = open).

World frame (our choice): z up with the table at z = 0, origin on the table under the
``shoulder_pan`` axis, x forward (the direction the zero pose reaches; URDF -y), y to the arm's
left. The URDF ``base`` frame has its origin on the underside of the base, so it sits on the table
and the ``shoulder_pan`` axis is 9.49 cm above it.

The URDF has no fingertip frames. Our jaw model: the fixed jaw's inner tip lies 12.5 mm beside the
tool point (``gripperframe``) towards the fixed jaw, and the moving jaw is the segment from its
hinge to a tip that coincides with the fixed tip at jaw angle 0 (so a 2.5 cm cube held between
them is centred within 5 mm of the tool point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINT_NAMES = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
ARM_JOINTS = 5  # revolute joints before the gripper

# Joint limits: arm joints in degrees (URDF limits), gripper in 0..100.
JOINT_LIMITS_LOW = np.array(
    [*np.degrees([-1.91986, -1.74533, -1.69, -1.65806, -2.79253]), 0.0], dtype=np.float64
)
JOINT_LIMITS_HIGH = np.array(
    [*np.degrees([1.91986, 1.74533, 1.69, 1.65806, 2.79253]), 100.0], dtype=np.float64
)
JOINT_LIMITS_LOW.flags.writeable = False
JOINT_LIMITS_HIGH.flags.writeable = False
JAW_LIMITS_RAD = (-0.174533, 1.74533)  # URDF limits of the moving jaw joint ("gripper")


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw rotation: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Joint origins from the URDF: (xyz in the parent link frame, rpy).
URDF_JOINT_ORIGINS = (
    ((0.0207909, -0.0230745, 0.0948817), (-3.14159, 6.03684e-16, 1.5708)),  # shoulder_pan
    ((-0.0303992, -0.0182778, -0.0542), (-1.5708, -1.5708, 0.0)),  # shoulder_lift
    ((-0.11257, -0.028, 0.0), (0.0, 0.0, 1.5708)),  # elbow_flex
    ((-0.1349, 0.0052, 0.0), (0.0, 0.0, -1.5708)),  # wrist_flex
    ((0.0, -0.0611, 0.0181), (1.5708, -9.38083e-08, 3.14159)),  # wrist_roll
)
URDF_JAW_ORIGIN = ((0.0202, 0.0188, -0.0234), (1.5708, 0.0, 0.0))  # gripper (moving jaw)
URDF_TOOL_ORIGIN = ((-0.0079, -0.000218121, -0.0981274), (1.5708, 0.0, 1.5708))  # gripperframe

_ORIGIN_T = np.array([xyz for xyz, _ in URDF_JOINT_ORIGINS])
_ORIGIN_R = np.stack([rpy_matrix(*rpy) for _, rpy in URDF_JOINT_ORIGINS])

# URDF base frame in the world frame: yaw +90 deg (URDF -y -> world +x), pan axis over the origin.
BASE_ROTATION = rpy_matrix(0.0, 0.0, np.pi / 2)
BASE_POSITION = -BASE_ROTATION @ np.array([_ORIGIN_T[0, 0], _ORIGIN_T[0, 1], 0.0])

# Points in the gripper link frame (the wrist_roll child frame).
TOOL_IN_GRIPPER = np.array(URDF_TOOL_ORIGIN[0])
TOOL_ROTATION_IN_GRIPPER = rpy_matrix(*URDF_TOOL_ORIGIN[1])
JAW_HINGE_IN_GRIPPER = np.array(URDF_JAW_ORIGIN[0])
JAW_AXIS_IN_GRIPPER = rpy_matrix(*URDF_JAW_ORIGIN[1])[:, 2]  # = -y of the gripper frame
FIXED_TIP_IN_GRIPPER = TOOL_IN_GRIPPER + np.array([-0.0125, 0.0, 0.0])
# Where the fixed jaw leaves the gripper body (for drawing).
JAW_ROOT_IN_GRIPPER = np.array([-0.0204, -0.000218121, -0.03])

_TIP_ARM = FIXED_TIP_IN_GRIPPER - JAW_HINGE_IN_GRIPPER  # hinge -> tip at jaw angle 0
_TIP_ARM_AXIAL = JAW_AXIS_IN_GRIPPER * (_TIP_ARM @ JAW_AXIS_IN_GRIPPER)
_TIP_ARM_RADIAL = _TIP_ARM - _TIP_ARM_AXIAL
_TIP_ARM_TANGENT = np.cross(JAW_AXIS_IN_GRIPPER, _TIP_ARM_RADIAL)
_TIP_ARM_CENTRE = JAW_HINGE_IN_GRIPPER + _TIP_ARM_AXIAL
JAW_RADIUS = float(np.linalg.norm(_TIP_ARM_RADIAL))  # m, hinge axis to moving tip (~8.5 cm)


def gripper_to_jaw_rad(gripper: np.ndarray | float) -> np.ndarray | float:
    """Gripper command 0..100 -> moving-jaw URDF angle (rad), linear over the URDF range."""
    low, high = JAW_LIMITS_RAD
    return low + (high - low) * np.asarray(gripper) / 100.0


def jaw_rad_to_gripper(jaw_rad: np.ndarray | float) -> np.ndarray | float:
    """Inverse of ``gripper_to_jaw_rad``."""
    low, high = JAW_LIMITS_RAD
    return (np.asarray(jaw_rad) - low) / (high - low) * 100.0


def jaw_gap(gripper: np.ndarray | float) -> np.ndarray | float:
    """Distance (m) between the two fingertips at a gripper value; negative when squeezed shut."""
    return 2.0 * JAW_RADIUS * np.sin(gripper_to_jaw_rad(gripper) / 2.0)


def gripper_for_gap(gap: float) -> float:
    """Gripper value (0..100) at which the fingertips are ``gap`` metres apart."""
    return float(jaw_rad_to_gripper(2.0 * np.arcsin(gap / (2.0 * JAW_RADIUS))))


def moving_tip_in_gripper(gripper: float) -> np.ndarray:
    """Moving fingertip in the gripper link frame (Rodrigues rotation about the jaw hinge)."""
    angle = float(gripper_to_jaw_rad(gripper))
    return _TIP_ARM_CENTRE + _TIP_ARM_RADIAL * np.cos(angle) + _TIP_ARM_TANGENT * np.sin(angle)


def clip_joints(joints_deg: np.ndarray) -> np.ndarray:
    """Clip joint values (..., 6) to the joint limits."""
    return np.clip(joints_deg, JOINT_LIMITS_LOW, JOINT_LIMITS_HIGH)


@dataclass(frozen=True)
class ArmPose:
    """Forward kinematics result, world frame, metres.

    joint_origins: (6, 3) origins of shoulder_pan, shoulder_lift, elbow_flex, wrist_flex,
        wrist_roll and the moving-jaw hinge.
    joint_axes: (5, 3) rotation axes of the five arm joints.
    gripper_rotation / gripper_position: pose of the gripper link (wrist_roll child) frame.
    tool_position / tool_rotation: the URDF ``gripperframe`` (tool point between the jaws).
    approach: unit vector from the wrist towards the fingertips (gripper link -z).
    fixed_tip / moving_tip: the two fingertips.
    """

    joint_origins: np.ndarray
    joint_axes: np.ndarray
    gripper_rotation: np.ndarray
    gripper_position: np.ndarray
    tool_position: np.ndarray
    tool_rotation: np.ndarray
    approach: np.ndarray
    fixed_tip: np.ndarray
    moving_tip: np.ndarray

    def to_world(self, point_in_gripper: np.ndarray) -> np.ndarray:
        """Map point(s) (..., 3) from the gripper link frame to the world frame."""
        return point_in_gripper @ self.gripper_rotation.T + self.gripper_position


# Joint i's local transform is origin_rotation_i @ Rz(q_i) = cos(q) A_i + sin(q) B_i + C_i.
_LOCAL_COS = _ORIGIN_R @ np.diag([1.0, 1.0, 0.0])
_LOCAL_SIN = _ORIGIN_R @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
_LOCAL_ONE = _ORIGIN_R @ np.diag([0.0, 0.0, 1.0])
_ORIGIN_AXES = _ORIGIN_R[:, :, 2:3]  # each joint's rotation axis in its parent frame


def _arm_chain(arm_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chain the five arm joints; returns origins (5, 3), axes (5, 3), gripper R and p."""
    local = (
        np.cos(arm_rad)[:, None, None] * _LOCAL_COS
        + np.sin(arm_rad)[:, None, None] * _LOCAL_SIN
        + _LOCAL_ONE
    )
    frames = np.empty((ARM_JOINTS + 1, 3, 3))  # frames[i]: frame joint i's origin is given in
    frames[0] = BASE_ROTATION
    for i in range(ARM_JOINTS):
        np.matmul(frames[i], local[i], out=frames[i + 1])
    parents = frames[:ARM_JOINTS]
    origins = BASE_POSITION + np.cumsum((parents @ _ORIGIN_T[:, :, None])[:, :, 0], axis=0)
    axes = (parents @ _ORIGIN_AXES)[:, :, 0]
    return origins, axes, frames[ARM_JOINTS], origins[4]


def forward_kinematics(joints_deg: np.ndarray) -> ArmPose:
    """Forward kinematics of one configuration (6 joint values, degrees and gripper 0..100)."""
    joints_deg = np.asarray(joints_deg, dtype=np.float64)
    origins, axes, grip_r, grip_p = _arm_chain(np.radians(joints_deg[:ARM_JOINTS]))
    tool_p = grip_r @ TOOL_IN_GRIPPER + grip_p
    return ArmPose(
        joint_origins=np.vstack([origins, grip_r @ JAW_HINGE_IN_GRIPPER + grip_p]),
        joint_axes=axes,
        gripper_rotation=grip_r,
        gripper_position=grip_p,
        tool_position=tool_p,
        tool_rotation=grip_r @ TOOL_ROTATION_IN_GRIPPER,
        approach=-grip_r[:, 2],
        fixed_tip=grip_r @ FIXED_TIP_IN_GRIPPER + grip_p,
        moving_tip=grip_r @ moving_tip_in_gripper(joints_deg[5]) + grip_p,
    )


def tool_position(joints_deg: np.ndarray) -> np.ndarray:
    """Tool point (world, metres) of one configuration; cheaper than ``forward_kinematics``."""
    _, _, grip_r, grip_p = _arm_chain(np.radians(np.asarray(joints_deg, float)[:ARM_JOINTS]))
    return grip_r @ TOOL_IN_GRIPPER + grip_p


_YZX = np.array([1, 2, 0])
_ZXY = np.array([2, 0, 1])


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (np.cross is ~20x slower on tiny arrays)."""
    return a[..., _YZX] * b[..., _ZXY] - a[..., _ZXY] * b[..., _YZX]


_DOWN = np.array([0.0, 0.0, -1.0])
_IK_JOINTS = 4  # pan, lift, elbow, wrist_flex; wrist_roll and gripper are kept from the seed
_IK_LOW = np.radians(JOINT_LIMITS_LOW[:_IK_JOINTS])
_IK_HIGH = np.radians(JOINT_LIMITS_HIGH[:_IK_JOINTS])
_DAMPING_EYE = np.eye(_IK_JOINTS)


def inverse_kinematics(
    target_position: np.ndarray,
    seed_deg: np.ndarray,
    iterations: int = 6,
    down_weight: float = 0.05,
    damping: float = 0.01,
    tolerance: float = 1e-4,
) -> np.ndarray:
    """Damped-least-squares IK for a tool-point position, keeping the gripper pointing down.

    Solves shoulder_pan, shoulder_lift, elbow_flex and wrist_flex from ``seed_deg`` (the current
    joints; wrist_roll and gripper are copied). Residual: tool position error (m) stacked with
    ``down_weight`` x (approach - straight down), so a pointing error of 1 rad weighs like
    ``down_weight`` metres of position error; where both cannot hold (e.g. too high for the wrist
    to point down), the compromise keeps the position to a few millimetres. Each iteration uses
    the analytic Jacobian (axis x lever arm); a joint at a limit that the step would push further
    is dropped from that iteration's solve, and the result is clipped. Stops early once the
    residual norm is below ``tolerance``. Warm-started from the current joints, 2-4 iterations
    suffice for a control step. Returns the 6 joint values (degrees).
    """
    target = np.asarray(target_position, dtype=np.float64)
    joints = np.array(seed_deg, dtype=np.float64)
    arm = np.radians(joints[:ARM_JOINTS])
    for _ in range(iterations):
        origins, axes, grip_r, grip_p = _arm_chain(arm)
        tool = grip_r @ TOOL_IN_GRIPPER + grip_p
        approach = -grip_r[:, 2]
        error = np.concatenate([target - tool, down_weight * (_DOWN - approach)])
        if error @ error < tolerance * tolerance:
            break
        # Columns: d(tool)/dq_i = axis_i x (tool - origin_i); d(approach)/dq_i = axis_i x approach.
        axes4 = axes[:_IK_JOINTS]
        levers = np.concatenate([tool - origins[:_IK_JOINTS], np.broadcast_to(approach, (4, 3))])
        jac = cross(np.concatenate([axes4, axes4]), levers).reshape(2, _IK_JOINTS, 3)
        jac = np.concatenate([jac[0].T, down_weight * jac[1].T])  # (6, 4)
        damping_eye = _DAMPING_EYE * (damping * damping)
        step = np.linalg.solve(jac.T @ jac + damping_eye, jac.T @ error)
        current = arm[:_IK_JOINTS]
        blocked = ((current <= _IK_LOW) & (step < 0)) | ((current >= _IK_HIGH) & (step > 0))
        if blocked.any():  # a joint held at its limit: solve with the others (active set)
            jac[:, blocked] = 0.0
            step = np.linalg.solve(jac.T @ jac + damping_eye, jac.T @ error)
        arm[:_IK_JOINTS] = np.clip(current + step, _IK_LOW, _IK_HIGH)
    joints[:ARM_JOINTS] = np.degrees(arm)
    return joints
