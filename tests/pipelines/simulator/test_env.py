import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pipelines.simulator import kinematics as kin
from pipelines.simulator.controllers import ExpertController, NoisyController
from pipelines.simulator.env import DEFAULT_WORKSPACE, FRONT_KEY, STATE_KEY, WRIST_KEY, SO101Env


@pytest.mark.parametrize("action_mode", ["joint", "ee_delta"])
def test_gymnasium_checker(action_mode):
    with warnings.catch_warnings():
        # Not applicable: the action space is in real units (degrees, metres), not [-1, 1];
        # and the env is constructed directly, not through gymnasium.make (no spec).
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space.*")
        warnings.filterwarnings("ignore", message=".*environment not having a spec.*")
        check_env(SO101Env(action_mode=action_mode, render_mode="rgb_array"))


def test_spaces_and_observations():
    env = SO101Env(image_size=96)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs[STATE_KEY].dtype == np.float32 and obs[STATE_KEY].shape == (6,)
    for key in (FRONT_KEY, WRIST_KEY):
        assert obs[key].shape == (96, 96, 3) and obs[key].dtype == np.uint8
        assert obs[key].std() > 5  # an actual picture
    assert env.action_space.shape == (6,)
    assert SO101Env(action_mode="ee_delta").action_space.shape == (4,)
    assert set(info) >= {"progress", "stage", "stage_name", "success", "is_intervention"}
    assert info["stage_name"] == "reach" and info["is_intervention"] is False
    assert env.max_episode_steps == 200 and SO101Env(task="pick_lift").max_episode_steps == 250
    assert env.render() is None
    assert SO101Env(render_mode="rgb_array").render().shape == (128, 256, 3)


def test_render_images_off_gives_zero_images_in_the_same_spaces():
    env = SO101Env(render_images=False)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert not obs[FRONT_KEY].any() and not obs[WRIST_KEY].any()


def test_the_cube_grows_in_the_wrist_view_as_the_tool_approaches():
    env = SO101Env(action_mode="ee_delta")
    obs, _ = env.reset(seed=1)

    def red_pixels(image):
        r, g, b = (image[..., i].astype(int) for i in range(3))
        return int(((r > 100) & (r > 2 * g) & (r > 2 * b)).sum())

    far_wrist, far_front = red_pixels(obs[WRIST_KEY]), red_pixels(obs[FRONT_KEY])
    expert = ExpertController(env, seed=1)
    info = {}
    for _ in range(40):
        obs, _, terminated, _, info = env.step(expert(obs, info))
        if env.world.grasp_distance < 0.015 or terminated:
            break
    assert far_front > 20  # the cube is in the front view
    assert far_wrist > 100 and red_pixels(obs[WRIST_KEY]) > 2 * far_wrist


def test_success_terminates_with_reward_one():
    env = SO101Env(render_images=False)
    obs, info = env.reset(seed=2)
    expert = ExpertController(env, seed=2)
    rewards = []
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(expert(obs, info))
        rewards.append(reward)
    assert terminated and not truncated and info["success"]
    assert rewards[-1] == 1.0 and sum(rewards[:-1]) == 0.0
    assert info["progress"] == 1.0 and info["stage_name"] == "grasp"


def test_truncated_at_the_time_limit():
    env = SO101Env(render_images=False, max_episode_steps=7)
    obs, _ = env.reset(seed=3)
    hold = obs[STATE_KEY].copy()
    for step in range(1, 8):
        obs, reward, terminated, truncated, info = env.step(hold)
        assert reward == 0.0 and not terminated
        assert truncated == (step == 7)
    assert SO101Env(fps=30).max_episode_steps == 600  # the limit is in seconds of sim time


def test_fixed_control_rate():
    env = SO101Env(render_images=False, fps=20)
    env.reset(seed=4)
    env.step(np.r_[env.world.joints[:5] + 90.0, 0.0])
    assert env.world.time == pytest.approx(0.05)
    assert np.abs(env.world.joints[:5] - env.world.joint_targets[:5]).min() > 0  # still moving


@pytest.mark.parametrize("action_mode", ["joint", "ee_delta"])
def test_limits_and_workspace_hold_under_random_actions(action_mode):
    env = SO101Env(action_mode=action_mode, render_images=False)
    env.action_space.seed(0)
    low, high = np.array(DEFAULT_WORKSPACE[0]), np.array(DEFAULT_WORKSPACE[1])
    steps = 0
    for episode in range(8):
        obs, _ = env.reset(seed=episode)
        for _ in range(150):
            action = env.action_space.sample() * np.float32(1.5)  # also out-of-range values
            obs, _, terminated, truncated, _ = env.step(action)
            steps += 1
            joints = env.world.joints
            assert np.all(joints >= kin.JOINT_LIMITS_LOW) and np.all(
                joints <= kin.JOINT_LIMITS_HIGH
            )
            assert env.observation_space[STATE_KEY].contains(obs[STATE_KEY])
            assert env.world.cube_position[2] >= env.world.cube_size / 2 - 1e-9
            if action_mode == "ee_delta":
                tool = env.world.tool_position
                assert np.all(tool >= low - 2e-3) and np.all(tool <= high + 2e-3)
            if terminated or truncated:
                break
    assert steps > 500


def test_ee_delta_moves_the_tool_by_the_clipped_delta():
    env = SO101Env(action_mode="ee_delta", render_images=False)
    env.reset(seed=5)
    start = env.world.tool_position.copy()
    env.step(np.array([0.05, 0.0, -0.01, 50.0]))  # x clipped to 2 cm
    np.testing.assert_allclose(env.world.tool_position - start, [0.02, 0.0, -0.01], atol=1e-3)
    assert env.world.pose.approach[2] < -0.99  # still pointing down


def test_same_seed_gives_identical_episodes():
    def run(seed):
        env = SO101Env(task="pick_lift", action_mode="ee_delta")
        obs, info = env.reset(seed=seed)
        policy = NoisyController(env, seed=seed)
        trace = [(obs, info)]
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(policy(obs, info))
            trace.append((obs, info))
        return trace

    first, second, other = run(11), run(11), run(12)
    for (obs_a, info_a), (obs_b, info_b) in zip(first, second, strict=True):
        for key in obs_a:
            assert obs_a[key].tobytes() == obs_b[key].tobytes()
        assert info_a.keys() == info_b.keys()
        for key in info_a:
            np.testing.assert_array_equal(info_a[key], info_b[key])
    assert first[-1][0][FRONT_KEY].tobytes() != other[-1][0][FRONT_KEY].tobytes()


def test_reset_without_seed_continues_the_random_stream():
    env = SO101Env(render_images=False)
    env.reset(seed=0)
    first = env.world.cube_position.copy()
    env.reset()
    assert not np.allclose(env.world.cube_position, first)


def test_is_intervention_is_reported_for_one_step():
    env = SO101Env(render_images=False)
    obs, _ = env.reset(seed=0)
    env.is_intervention = True
    _, _, _, _, info = env.step(obs[STATE_KEY])
    assert info["is_intervention"] is True
    _, _, _, _, info = env.step(obs[STATE_KEY])
    assert info["is_intervention"] is False


@pytest.mark.parametrize("env_id", ["flywheel/SO101ReachGrasp-v0", "flywheel/SO101PickLift-v0"])
def test_registered_with_gymnasium(env_id):
    import gymnasium

    import pipelines.simulator  # noqa: F401  (registers the ids)

    env = gymnasium.make(env_id, image_size=32, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space.*")
        check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs["observation.images.front"].shape == (32, 32, 3)
    assert env.unwrapped.world.task == ("pick_lift" if "Lift" in env_id else "reach_grasp")
    assert env.render().ndim == 3
