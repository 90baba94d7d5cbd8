"""HIL-SERL's recording: each episode's outcome is the success its rollout saw (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.arm import JOINTS
from actors.hilserl.recording import OnlineRecorder
from pipelines.dataset import LeRobotDataset
from pipelines.rl.replay import Episode

FRONT = "observation.images.front"


def episode(steps: int, terminated: bool, info: dict) -> Episode:
    """A collector's episode: `steps` steps (observations 0..steps), a front camera."""
    rng = np.random.default_rng(steps)
    reward = np.zeros(steps, np.float32)
    reward[-1] = float(terminated)
    return Episode(
        obs={
            "observation.state": rng.uniform(-10, 10, (steps + 1, len(JOINTS))).astype(np.float32),
            FRONT: rng.integers(0, 255, (steps + 1, 32, 32, 3), dtype=np.uint8),
        },
        action=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        reward=reward,
        terminated=terminated,
        intervention=np.arange(steps) % 2 == 0,
        demo=np.zeros(steps, bool),
        info=info,
    )


@pytest.mark.parametrize("rerun", [False, True])
def test_each_episode_is_recorded_with_the_success_its_rollout_saw(tmp_path, rerun):
    root = str(tmp_path / "online")
    episodes = [
        episode(4, True, {"success": True}),  # the simulator's success ended it
        episode(5, False, {"success": False}),  # ran out of steps
        # a served classifier's false success in the simulator: the reward says success,
        # the simulator (the task's own rule) does not
        episode(3, True, {"success": False}),
        episode(2, True, {}),  # a rollout that reports no success of its own: the reward's
    ]
    recorder = OnlineRecorder(root, 10, "t", {FRONT: (32, 32)}, max_ee_step=0.02)
    try:
        first = 1 if rerun else len(episodes)
        assert recorder.record(episodes[:first]) == first
    finally:
        recorder.close()
    if rerun:  # a rerun of the run appends to the dataset
        recorder = OnlineRecorder(root, 10, "t", {FRONT: (32, 32)}, max_ee_step=0.02)
        try:
            recorder.record(episodes[1:])
        finally:
            recorder.close()
    ds = LeRobotDataset(root)
    assert ds.outcomes == {0: True, 1: False, 2: False, 3: True}
    assert [ds.episode_length(e) for e in ds.episode_indices] == [4, 5, 3, 2]
    rewards = [ds.read_episode(e)["next.reward"].to_pylist()[-1] for e in ds.episode_indices]
    assert rewards == [1.0, 0.0, 1.0, 1.0]  # next.reward stays the run's reward


def test_a_new_recording_is_v30_with_units_and_a_resumed_one_keeps_its_layout(tmp_path):
    def record(root, episodes, version=None):
        recorder = OnlineRecorder(root, 10, "t", {FRONT: (32, 32)}, 0.02, version)
        try:
            recorder.record(episodes)
        finally:
            recorder.close()
        return LeRobotDataset(root)

    new = record(str(tmp_path / "new"), [episode(3, True, {"success": True})])
    assert new.version == "v3.0"  # the default, as LeRobot >= 0.4 records
    assert new.features["observation.state"]["units"] == ["degrees"] * 5 + ["range_0_100"]
    assert new.features["action"]["names"] == ["dx", "dy", "dz", "gripper"]
    assert new.features["action"]["units"] == ["m", "m", "m", "range_0_100"]
    old = str(tmp_path / "old")
    assert record(old, [episode(3, True, {})], version="v2.1").version == "v2.1"
    resumed = record(old, [episode(2, False, {})], version="v3.0")  # a resumed run's
    assert resumed.version == "v2.1" and resumed.episode_indices == [0, 1]
