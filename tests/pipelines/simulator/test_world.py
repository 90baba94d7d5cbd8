import numpy as np
import pytest

from pipelines.simulator import kinematics as kin
from pipelines.simulator.world import SO101World


def joints_at(world: SO101World, point: np.ndarray, gripper: float) -> np.ndarray:
    """Joints with the tool at ``point`` (gripper down, roll kept) and the given gripper."""
    joints = world.joints
    for _ in range(5):
        joints = kin.inverse_kinematics(point, joints, iterations=20)
    joints[5] = gripper
    return joints


def settle(world: SO101World, targets: np.ndarray, seconds: float = 1.0) -> None:
    world.set_joint_targets(targets)
    for _ in range(round(seconds * 10)):
        world.step(0.1)


def test_spawn_is_seeded_and_on_the_table():
    a, b, c = SO101World(seed=3), SO101World(seed=3), SO101World(seed=4)
    np.testing.assert_array_equal(a.cube_position, b.cube_position)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert not np.allclose(a.cube_position, c.cube_position)
    for seed in range(20):
        world = SO101World(seed=seed)
        assert world.cube_position[2] == pytest.approx(world.cube_size / 2)
        assert 0.14 < np.hypot(*world.cube_position[:2]) < 0.25
        assert world.cube_position[0] > 0.1  # in front of the arm
        assert not world.held and world.stage() == 0


def test_joints_move_at_bounded_speed_within_limits():
    world = SO101World(seed=0)
    start = world.joints
    world.set_joint_targets(np.array([300.0, -300.0, 300.0, -300.0, 300.0, 100.0]))
    world.step(0.1)
    moved = np.abs(world.joints - start)
    assert moved[:5].max() == pytest.approx(18.0)  # 180 deg/s; arm joints in sync
    assert moved[5] == pytest.approx(world.joint_speed[5] * 0.1)
    for _ in range(30):
        world.step(0.1)
    np.testing.assert_allclose(
        world.joints, kin.clip_joints(np.array([300, -300, 300, -300, 300, 100.0]))
    )


def test_closing_on_the_cube_attaches_it_and_lifting_carries_it():
    world = SO101World(task="pick_lift", seed=1)
    cube = world.cube_position.copy()
    settle(world, joints_at(world, cube + [0, 0, 0.05], 60.0))
    settle(world, joints_at(world, cube, 60.0))
    assert not world.held and world.stage() == 1  # at the cube: grasp stage
    settle(world, np.r_[world.joints[:5], 0.0], 0.5)
    assert world.held
    assert world.gripper == pytest.approx(world.contact_gripper)  # jaws stall on the cube
    assert world.stage() == 2 and not world.success()
    settle(world, joints_at(world, cube + [0, 0, 0.07], 0.0))
    assert world.held and world.success()
    assert world.lift >= 0.05 and world.progress() == 1.0
    offset = world.cube_position - world.tool_position
    assert np.linalg.norm(offset) < 0.006  # carried with the tool


def test_opening_drops_the_cube_onto_the_table():
    world = SO101World(task="pick_lift", seed=2)
    cube = world.cube_position.copy()
    settle(world, joints_at(world, cube, 60.0))
    settle(world, np.r_[world.joints[:5], 0.0], 0.5)
    settle(world, joints_at(world, cube + [0, 0, 0.06], 0.0))
    assert world.held and world.cube_position[2] > 0.06
    world.set_joint_targets(np.r_[world.joints[:5], 80.0])
    heights = []
    for _ in range(5):
        world.step(0.1)
        heights.append(world.cube_position[2])
    assert not world.held
    assert heights[0] > world.cube_rest_z  # released, falling under gravity
    assert heights[-1] == pytest.approx(world.cube_rest_z)  # resting on the table
    np.testing.assert_allclose(world.cube_position[:2], world.tool_position[:2], atol=0.01)
    assert world.cube_rotation[2, 2] == pytest.approx(1.0)  # lands flat


def test_closing_on_nothing_or_too_early_attaches_nothing():
    world = SO101World(seed=5)
    cube = world.cube_position.copy()
    settle(world, joints_at(world, cube + [0.04, 0.0, 0.0], 60.0))  # beside the cube
    settle(world, np.r_[world.joints[:5], 0.0], 0.5)
    assert not world.held and world.gripper == 0.0
    # Jaws already shut when arriving at the cube: nothing is grasped either.
    settle(world, joints_at(world, cube, 0.0))
    settle(world, np.r_[world.joints[:5], 0.0], 0.5)
    assert not world.held and world.stage() == 1


def test_cube_never_goes_below_the_table():
    world = SO101World(task="pick_lift", seed=6)
    cube = world.cube_position.copy()
    settle(world, joints_at(world, cube, 60.0))
    settle(world, np.r_[world.joints[:5], 0.0], 0.5)
    assert world.held
    settle(world, joints_at(world, cube - [0, 0, 0.03], 0.0))  # push down into the table
    assert world.cube_position[2] >= world.cube_size / 2 - 1e-9


def test_progress_rises_toward_the_cube_and_drops_when_backing_off():
    world = SO101World(seed=7)
    cube = world.cube_position.copy()
    start = world.progress()
    settle(world, joints_at(world, cube + [0, 0, 0.05], 60.0))
    above = world.progress()
    settle(world, joints_at(world, cube, 60.0))
    at_cube = world.progress()
    settle(world, np.r_[world.joints[:5], 27.0], 0.5)  # closing, not yet touching
    closing = world.progress()
    settle(world, joints_at(world, cube + [0, 0, 0.08], 60.0))
    backed_off = world.progress()
    assert start < above < at_cube < closing < 1.0
    assert backed_off < above
    assert min(start, backed_off) >= 0.0 and max(at_cube, closing) <= 1.0


def test_set_joints_mirrors_an_external_arm_with_grasping():
    world = SO101World(seed=8)
    cube = world.cube_position.copy()
    open_at_cube = joints_at(world, cube, 60.0)
    world.set_joints(open_at_cube)
    np.testing.assert_allclose(world.joints, open_at_cube)
    np.testing.assert_allclose(world.tool_position, cube, atol=1e-3)
    world.set_joints(np.r_[open_at_cube[:5], 10.0])
    assert world.held and world.success()


def test_same_seed_and_commands_give_identical_state():
    def run(seed: int) -> list:
        world = SO101World(task="pick_lift", seed=seed)
        rng = np.random.default_rng(0)
        states = []
        for _ in range(40):
            world.set_joint_targets(world.joints + rng.normal(0, 10, size=6))
            world.step(0.1)
            states.append(world.snapshot())
        return states

    for a, b in zip(run(9), run(9), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
