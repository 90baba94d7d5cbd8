import numpy as np
import pytest

from pipelines.simulator import kinematics as kin

# Hand derivation of the zero pose from the URDF joint origins, in the world frame (x forward,
# y left, z up; origin on the table under the shoulder_pan axis). At zero the frames' axes are
# axis permutations, so each URDF offset (x, y, z) maps onto world axes by inspection:
#   shoulder (rpy pi, 0, pi/2):         x -> -x, y -> +y, z -> -z
#   upper_arm (then rpy -pi/2, -pi/2):  x -> -z, y -> -x, z -> +y   (upper arm points up)
#   lower_arm (then yaw +pi/2):         x -> -x, y -> +z, z -> +y   (forearm points forward)
#   wrist (then yaw -pi/2):             x -> -z, y -> -x, z -> +y
#   gripper (then rpy pi/2, 0, pi):     x -> +z, y -> +y, z -> -x   (jaws point forward)
PAN = np.array([0.0, 0.0, 0.0948817])
LIFT = PAN + np.array([0.0303992, -0.0182778, 0.0542])
ELBOW = LIFT + np.array([0.028, 0.0, 0.11257])
WRIST_FLEX = ELBOW + np.array([0.1349, 0.0, 0.0052])
WRIST_ROLL = WRIST_FLEX + np.array([0.0611, 0.0181, 0.0])
TOOL_FROM_ROLL = np.array([0.0981274, -0.000218121, -0.0079])
TOOL = WRIST_ROLL + TOOL_FROM_ROLL


def joints(**values: float) -> np.ndarray:
    out = np.zeros(6)
    for name, value in values.items():
        out[kin.JOINT_NAMES.index(name)] = value
    return out


def test_zero_pose_matches_hand_computation():
    pose = kin.forward_kinematics(np.zeros(6))
    expected = np.stack([PAN, LIFT, ELBOW, WRIST_FLEX, WRIST_ROLL])
    np.testing.assert_allclose(pose.joint_origins[:5], expected, atol=2e-5)
    np.testing.assert_allclose(pose.tool_position, TOOL, atol=2e-5)
    np.testing.assert_allclose(pose.tool_position, [0.35253, -0.00040, 0.25895], atol=1e-5)
    np.testing.assert_allclose(pose.approach, [1.0, 0.0, 0.0], atol=1e-4)  # jaws forward
    # Joint axes: pan vertical (URDF z flipped down), lift/elbow/wrist_flex along +y.
    np.testing.assert_allclose(pose.joint_axes[0], [0, 0, -1], atol=1e-4)
    np.testing.assert_allclose(pose.joint_axes[1:4], [[0, 1, 0]] * 3, atol=1e-4)
    np.testing.assert_allclose(pose.joint_axes[4], -pose.approach, atol=1e-6)  # roll axis


def test_shoulder_pan_90_turns_the_arm_to_the_right():
    # The pan axis points down, so +90 deg turns the arm clockwise seen from above: x -> -y.
    pose = kin.forward_kinematics(joints(shoulder_pan=90))
    np.testing.assert_allclose(pose.tool_position, [TOOL[1], -TOOL[0], TOOL[2]], atol=2e-5)


def test_elbow_flex_90_points_the_forearm_down():
    # Rotation by +90 deg about +y through the elbow: (x, y, z) -> (z, y, -x).
    pose = kin.forward_kinematics(joints(elbow_flex=90))
    forearm = np.array([0.0052, 0.0, -0.1349])
    np.testing.assert_allclose(pose.joint_origins[3], ELBOW + forearm, atol=2e-5)
    rest = WRIST_ROLL - WRIST_FLEX + TOOL_FROM_ROLL  # wrist_flex -> tool at zero
    rotated = np.array([rest[2], rest[1], -rest[0]])
    np.testing.assert_allclose(pose.tool_position, ELBOW + forearm + rotated, atol=2e-5)
    np.testing.assert_allclose(pose.approach, [0.0, 0.0, -1.0], atol=1e-4)


def test_wrist_flex_90_points_the_gripper_down():
    pose = kin.forward_kinematics(joints(wrist_flex=90))
    expected = WRIST_FLEX + np.array([-0.0079, 0.0181 - 0.000218121, -(0.0611 + 0.0981274)])
    np.testing.assert_allclose(pose.tool_position, expected, atol=2e-5)
    np.testing.assert_allclose(pose.approach, [0.0, 0.0, -1.0], atol=1e-4)


def test_wrist_roll_turns_about_the_approach_axis():
    a = kin.forward_kinematics(joints(wrist_flex=90))
    b = kin.forward_kinematics(joints(wrist_flex=90, wrist_roll=90))
    np.testing.assert_allclose(b.approach, a.approach, atol=1e-6)
    # The tool point sits 7.9 mm off the roll axis; a quarter turn moves it on that circle.
    np.testing.assert_allclose(np.linalg.norm(b.tool_position - a.tool_position),
                               0.0079 * np.sqrt(2), atol=1e-4)  # fmt: skip


def test_joint_limits_in_real_units():
    np.testing.assert_allclose(kin.JOINT_LIMITS_HIGH[:5], [110.0, 100.0, 96.83, 95.0, 160.0],
                               atol=0.01)  # fmt: skip
    np.testing.assert_allclose(kin.JOINT_LIMITS_LOW, -np.r_[kin.JOINT_LIMITS_HIGH[:5], 0.0])
    clipped = kin.clip_joints(np.array([500.0, -500.0, 0.0, 0.0, 0.0, 150.0]))
    np.testing.assert_allclose(clipped, [110.0, -100.0, 0.0, 0.0, 0.0, 100.0], atol=0.01)


def test_gripper_maps_linearly_onto_the_jaw_range():
    assert kin.gripper_to_jaw_rad(0.0) == pytest.approx(-0.174533)
    assert kin.gripper_to_jaw_rad(100.0) == pytest.approx(1.74533)
    assert kin.jaw_rad_to_gripper(kin.gripper_to_jaw_rad(37.0)) == pytest.approx(37.0)
    assert kin.jaw_gap(0.0) < 0.0 < kin.jaw_gap(20.0) < kin.jaw_gap(100.0)
    assert kin.jaw_gap(kin.gripper_for_gap(0.025)) == pytest.approx(0.025)


def test_fingertips_meet_at_jaw_angle_zero_and_open_apart():
    closed = kin.forward_kinematics(joints(gripper=kin.jaw_rad_to_gripper(0.0)))
    np.testing.assert_allclose(closed.moving_tip, closed.fixed_tip, atol=1e-9)
    opened = kin.forward_kinematics(joints(gripper=60.0))
    gap = np.linalg.norm(opened.moving_tip - opened.fixed_tip)
    assert gap == pytest.approx(kin.jaw_gap(60.0))
    # The tool point lies (within 5 mm) between the tips once they are a cube's width apart.
    grip = kin.forward_kinematics(joints(gripper=kin.gripper_for_gap(0.025)))
    middle = (grip.fixed_tip + grip.moving_tip) / 2
    assert np.linalg.norm(middle - grip.tool_position) < 0.005


def test_inverse_kinematics_round_trip_with_gripper_down():
    rng = np.random.default_rng(0)
    seed = kin.inverse_kinematics(np.array([0.16, 0.0, 0.10]), np.array([0, 0, 20, 80, 0, 10.0]),
                                  iterations=50)  # fmt: skip
    for _ in range(100):
        radius, azimuth = rng.uniform(0.13, 0.25), rng.uniform(-0.8, 0.8)
        target = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth),
                           rng.uniform(0.0125, 0.10)])  # fmt: skip
        solution = seed
        for _ in range(5):  # a few control steps, warm-started like the env does
            solution = kin.inverse_kinematics(target, solution)
        pose = kin.forward_kinematics(solution)
        assert np.linalg.norm(pose.tool_position - target) < 1e-3
        assert pose.approach[2] < -np.cos(np.radians(3.0))  # within 3 deg of straight down
        assert np.all(solution >= kin.JOINT_LIMITS_LOW) and np.all(
            solution <= kin.JOINT_LIMITS_HIGH
        )


def test_inverse_kinematics_keeps_roll_and_gripper_and_prefers_position():
    seed = np.array([0.0, -12.7, 17.4, 85.3, 33.0, 42.0])
    solution = kin.inverse_kinematics(np.array([0.2, 0.05, 0.03]), seed, iterations=30)
    assert solution[4] == 33.0 and solution[5] == 42.0
    # Too high to point straight down (wrist_flex at its limit): the position is kept to a few
    # millimetres and the gripper tilts.
    high = np.array([0.18, 0.0, 0.15])
    solution = kin.inverse_kinematics(high, seed, iterations=30)
    assert solution[3] == pytest.approx(kin.JOINT_LIMITS_HIGH[3])
    assert np.linalg.norm(kin.tool_position(solution) - high) < 5e-3
