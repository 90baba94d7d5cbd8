"""TeleopSession's controls: each belongs to the episode it was given in, and s / f are the
saved episode's outcome (no Ray needed)."""

import numpy as np
import pytest

from actors.teleop import FAILURE, STOP, SUCCESS, TIMEOUT, TeleopSession
from pipelines.dataset import EpisodeRecorder, LeRobotDataset


def session_without_arms() -> TeleopSession:
    return TeleopSession(follower=None, leader=None, cameras={}, recorder=None)


def test_a_late_control_never_ends_the_next_episode():
    session = session_without_arms()
    session._begin_attempt()  # episode 1 starts (what record_episode does)
    first = session.attempt
    session.success()  # pressed as episode 1 hit its time limit: still pending when ...
    session._begin_attempt()  # ... episode 2 starts, so it is dropped
    assert session.attempt == first + 1
    assert session._take_event() is None
    session.success(attempt=first)  # a judge's late verdict about episode 1: ignored
    assert session._take_event() is None
    session.success(attempt=session.attempt)  # a verdict about this episode counts
    session.failure()  # the first control of an episode wins, stop excepted
    assert session._take_event() == SUCCESS
    session.failure(attempt=session.attempt)
    assert session._take_event() == FAILURE


def test_stop_carries_over_and_ends_the_session_before_another_episode():
    session = session_without_arms()
    session._begin_attempt()
    session.success()
    session.stop()  # overrides the pending success
    assert session._take_event() == STOP
    session.stop()  # given as an episode ends: the session records no further episode
    session._begin_attempt()
    assert session.run(3) == []


class ScriptedSession(TeleopSession):
    """A session without arms: each tick is a zero frame, and the control `script[attempt]`
    (a method name) is given at the episode's third frame; None gives none."""

    def __init__(self, recorder, script: dict, episode_time_s: float):
        super().__init__(None, None, {}, recorder, fps=50.0, episode_time_s=episode_time_s)
        self.script = script

    def _tick(self):
        if self.frames_this_episode == 2 and self.script.get(self.attempt):
            getattr(self, self.script[self.attempt])(attempt=self.attempt)
        return np.zeros(2, np.float32), np.zeros(2, np.float32), {}


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_s_and_f_are_the_episodes_outcome_and_no_key_none(tmp_path, version):
    root = tmp_path / "teleop"
    recorder = EpisodeRecorder(
        root, fps=50, task="t", joint_names=["a", "b"], cameras={}, version=version
    )
    # attempts: 1 s; 2 r (re-recorded) then 3 f; 4 ends at the time limit; 5 s
    script = {1: "success", 2: "rerecord", 3: "failure", 5: "success"}
    session = ScriptedSession(recorder, script, episode_time_s=1.0)
    try:
        ended = [session.record_episode().outcome for _ in range(4)]
    finally:
        recorder.close()
    assert ended == [SUCCESS, FAILURE, TIMEOUT, SUCCESS]
    ds = LeRobotDataset(root)
    assert ds.outcomes == {0: True, 1: False, 2: None, 3: True}
    assert [ds.episode_length(e) for e in (0, 1, 3)] == [3, 3, 3]  # ended at the control
    rewards = [ds.read_episode(e)["next.reward"].to_pylist()[-1] for e in ds.episode_indices]
    assert rewards == [1.0, 0.0, 0.0, 1.0]
