"""Controller statistics over 50 seeded episodes each; images off (``render_images=False``) to
keep this fast: the controllers read privileged state, so images do not change the outcome."""

from functools import cache

import numpy as np
import pytest

from pipelines.simulator.controllers import (
    CONTROLLERS,
    ExpertController,
    FailingController,
    NoisyController,
    Operator,
    make_controller,
    run_episode,
)
from pipelines.simulator.env import SO101Env

EPISODES = 50


@cache
def stats(task: str, name: str, action_mode: str = "joint") -> dict:
    env = SO101Env(task=task, action_mode=action_mode, render_images=False)
    controller = make_controller(name, env)
    runs = [run_episode(env, controller, seed=seed) for seed in range(EPISODES)]
    lengths = [run["length"] for run in runs if run["success"]]
    return {
        "success": np.mean([run["success"] for run in runs]),
        "mean_length": np.mean(lengths) if lengths else np.nan,
        "drops": np.mean([_max_drop(run["progress"]) >= 0.05 for run in runs]),
    }


def _max_drop(progress: list[float]) -> float:
    trace = np.asarray(progress)
    return float((np.maximum.accumulate(trace) - trace).max())


@pytest.mark.parametrize("task", ["reach_grasp", "pick_lift"])
def test_expert_succeeds_quickly(task):
    expert = stats(task, "expert")
    assert expert["success"] >= 0.95
    assert 30 <= expert["mean_length"] <= 60  # 3-6 s at 10 fps
    assert expert["drops"] == 0.0


@pytest.mark.parametrize("task", ["reach_grasp", "pick_lift"])
def test_failing_controller_fails(task):
    assert stats(task, "failing")["success"] <= 0.10


@pytest.mark.parametrize("task", ["reach_grasp", "pick_lift"])
def test_hesitant_backs_off_and_takes_at_least_twice_as_long(task):
    hesitant, expert = stats(task, "hesitant"), stats(task, "expert")
    assert hesitant["success"] >= 0.8
    assert hesitant["mean_length"] >= 2 * expert["mean_length"]
    assert hesitant["drops"] >= 0.8  # progress visibly drops in most episodes


@pytest.mark.parametrize("task", ["reach_grasp", "pick_lift"])
def test_noisy_is_worse_than_expert(task):
    noisy, expert = stats(task, "noisy"), stats(task, "expert")
    assert noisy["success"] >= 0.5
    assert noisy["success"] < expert["success"] or noisy["mean_length"] > expert["mean_length"]


def test_expert_in_ee_delta_mode():
    assert stats("pick_lift", "expert", "ee_delta")["success"] >= 0.95


def test_registry():
    assert set(CONTROLLERS) == {"expert", "hesitant", "noisy", "failing"}
    env = SO101Env(render_images=False)
    assert isinstance(make_controller("failing", env, seed=1), FailingController)
    with pytest.raises(ValueError):
        make_controller("nope", env)


@pytest.mark.parametrize("action_mode", ["joint", "ee_delta"])
def test_controllers_are_deterministic_given_the_seed(action_mode):
    env = SO101Env(task="pick_lift", action_mode=action_mode, render_images=False)
    first = run_episode(env, NoisyController(env), seed=3)
    second = run_episode(env, NoisyController(env), seed=3)
    assert first == second


class DriveAway:
    """A bad policy: moves the tool away from the cube, gripper open."""

    def __init__(self, env: SO101Env):
        self.helper = ExpertController(env)

    def __call__(self, obs, info):
        world = self.helper.world
        away = world.tool_position - world.cube_position
        target = world.tool_position + 0.01 * away / np.linalg.norm(away)
        return self.helper.action_for(target, 50.0)


@pytest.mark.parametrize("task", ["reach_grasp", "pick_lift"])
def test_operator_rescues_a_drifting_policy(task):
    env = SO101Env(task=task, render_images=False)
    for seed in range(5):
        alone = run_episode(env, DriveAway(env), seed=seed)
        assert not alone["success"]
        operator = Operator(env, DriveAway(env))
        rescued = run_episode(env, operator, seed=seed)
        assert rescued["success"]
        assert rescued["intervention_steps"] == operator.intervention_steps > 0
        assert operator.takeovers >= 1
        assert 0.2 < operator.intervention_rate < 1.0  # the policy still acts at times


def test_operator_leaves_a_good_policy_alone_and_flags_its_steps():
    env = SO101Env(render_images=False)
    operator = Operator(env, ExpertController(env))
    run = run_episode(env, operator, seed=0)
    assert run["success"] and operator.intervention_steps == 0

    obs, info = env.reset(seed=0)
    operator = Operator(env, DriveAway(env), seed=0)
    flags = []
    for _ in range(30):
        action, is_intervention = operator(obs, info)
        obs, _, terminated, _, info = env.step(action)
        assert info["is_intervention"] == is_intervention
        flags.append(is_intervention)
        if terminated:
            break
    assert any(flags) and not all(flags)


def test_operator_rescues_the_failing_controller():
    env = SO101Env(task="pick_lift", render_images=False)
    rescued = [run_episode(env, Operator(env, FailingController(env)), seed=s) for s in range(10)]
    assert np.mean([run["success"] for run in rescued]) >= 0.9
