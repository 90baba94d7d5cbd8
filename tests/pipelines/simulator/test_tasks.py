"""The task table: every task's text, stages, time limit and progress weights in one place."""

import gymnasium as gym
import pytest

import pipelines.simulator  # noqa: F401  (registers the environments)
from pipelines.simulator.env import SO101Env
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES, TASKS, get_task, task_of_text
from pipelines.simulator.world import SO101World


def test_the_table():
    assert TASK_NAMES == ("reach_grasp", "pick_lift") and DEFAULT_TASK == "reach_grasp"
    assert get_task("reach_grasp").text == "reach and grasp the red cube"
    assert get_task("pick_lift").stages == ("reach", "grasp", "lift")
    assert get_task("pick_lift").episode_steps(10) == 250
    assert task_of_text(["pick up the red cube and lift it", "other"]) == "pick_lift"
    assert task_of_text(["other"]) is None
    with pytest.raises(ValueError, match="unknown task 'fly'"):
        get_task("fly")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_env_and_world_follow_the_table(name):
    task = TASKS[name]
    env = SO101Env(name, render_images=False)
    assert env.max_episode_steps == task.episode_steps(env.fps)
    assert SO101World(name).stages == task.stages
    made = gym.make(f"flywheel/{task.gym_id}", render_images=False)
    assert made.unwrapped.task == name
    assert task.progress(1.0, 1.0, 1.0) == pytest.approx(1.0)
