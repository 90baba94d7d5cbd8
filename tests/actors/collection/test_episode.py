"""Critical-state collection: undo is exact, resampling uses conditional propensities,
plain frames carry propensity 1 / approval none; a real arm's undo against the emulated arm."""

import numpy as np
import pytest

from actors.collection.episode import (
    ControllerResponder,
    CriticalRule,
    ProgressAdmin,
    return_to_pose,
    run_collection_episode,
)
from pipelines.selection.selector import ActionSelector, SelectorError
from pipelines.simulator import SO101Env
from pipelines.simulator.controllers import make_controller

RESPONDERS = ("expert", "hesitant", "noisy", "failing")


def collect(seed, mode="random", critical="grasp+every:5", image_size=16, render=True):
    env = SO101Env("reach_grasp", image_size=image_size, render_images=render)
    responders = [ControllerResponder(n, env, seed) for n in RESPONDERS]
    driver = make_controller("noisy", env, seed=seed)
    scorer = None if mode == "random" else (lambda obs, c: -np.abs(c - c.mean(0)).sum(1))
    selector = ActionSelector(mode, epsilon=0.3, scorer=scorer, seed=seed)
    out = run_collection_episode(
        env, driver, responders, selector, CriticalRule.parse(critical), ProgressAdmin(), seed
    )
    return env, out


@pytest.mark.parametrize("mode", ["random", "epsilon_greedy", "learned"])
def test_rejections_are_undone_and_resampled_exactly(mode):
    env, out = collect(seed=2, mode=mode)
    frames = out.frames
    assert out.rejections > 0 and out.critical_states > 0
    for f, nxt in zip(frames, frames[1:], strict=False):
        if f.approval_status == "rejected":
            # the next frame shows the same state again (bit-identical images), same state_id
            assert nxt.state_id == f.state_id
            for k in f.observation:
                assert np.array_equal(f.observation[k], nxt.observation[k]), k
            if nxt.is_critical:  # resampled among the candidates not yet executed
                assert nxt.log["resampled"] and nxt.selected_candidate != f.selected_candidate
                assert f.selected_candidate in nxt.log["already_executed"]
                p = np.array(f.log["candidate_propensities"])
                if not f.log["resampled"]:  # first draw: check the conditional formula
                    expected = p[nxt.selected_candidate] / (1 - p[f.selected_candidate])
                    assert nxt.propensity == pytest.approx(expected)
        else:
            assert nxt.state_id != f.state_id
        if not f.is_critical:
            assert f.approval_status == "none" and f.propensity == 1.0
            assert f.selected_candidate == -1
            assert np.array_equal(f.candidates[0], f.action)
        else:
            assert np.array_equal(f.candidates[f.selected_candidate], f.action)
            assert 0 < f.propensity <= 1
            assert sum(f.log["candidate_propensities"]) == pytest.approx(1.0)


def test_replaying_the_kept_actions_reaches_the_same_end_state():
    """Undo leaves no trace: the approved and plain actions alone replay the episode."""
    env, out = collect(seed=5, render=False)
    assert out.rejections > 0
    final = env.get_state()["world"]
    replay = SO101Env("reach_grasp", image_size=16, render_images=False)
    replay.reset(seed=5)
    for f in out.frames:
        if f.approval_status != "rejected":
            replay.step(f.action)
    for k, v in replay.get_state()["world"].items():
        if k != "cube_in_gripper":
            assert np.array_equal(np.asarray(v), np.asarray(final[k])), k


def test_critical_rules():
    assert CriticalRule.parse("grasp") == CriticalRule(grasp=True, every=None)
    assert CriticalRule.parse("every:7") == CriticalRule(grasp=False, every=7)
    assert CriticalRule.parse("grasp+every:3") == CriticalRule(grasp=True, every=3)
    rule = CriticalRule.parse("grasp")
    assert rule.is_critical(4, in_region=True, was_in_region=False)
    assert not rule.is_critical(5, in_region=True, was_in_region=True)
    assert CriticalRule.parse("every:3").is_critical(6, False, False)
    for bad in ("every:0", "every:x", "sometimes"):
        with pytest.raises(SelectorError, match="--critical"):
            CriticalRule.parse(bad)
    _, out = collect(seed=1, critical="every:4", render=False)
    steps = [f for f in out.frames if f.is_critical]
    assert steps and out.critical_states >= len(out.frames) // 8


def test_the_admin_judges_progress():
    admin = ProgressAdmin(0.01)
    assert admin.approves(0.5, {"progress": 0.52, "success": False})
    assert not admin.approves(0.5, {"progress": 0.505, "success": False})
    assert admin.approves(0.9, {"progress": 0.2, "success": True})


class FakeArm:
    """A follower that moves at most `max_step` toward each goal (FollowerArm's rule)."""

    def __init__(self, joints, max_step=5.0, stuck=False):
        self.joints = np.asarray(joints, dtype=np.float64)
        self.max_step = max_step
        self.stuck = stuck

    def read(self):
        return self.joints.copy()

    def command(self, goal):
        if not self.stuck:
            self.joints += np.clip(goal - self.joints, -self.max_step, self.max_step)


def test_return_to_pose_moves_back_or_names_the_joint():
    arm = FakeArm([0, 0, 0, 0, 0, 50])
    reached = return_to_pose(arm, np.array([20, -12, 7, 3, 0, 10.0]), period_s=0.0)
    assert np.allclose(reached, [20, -12, 7, 3, 0, 10], atol=1.0)
    with pytest.raises(RuntimeError, match="joint 0 is 20.0 from the recorded pose"):
        return_to_pose(
            FakeArm([0] * 6, stuck=True),
            np.array([20, 0, 0, 0, 0, 0.0]),
            timeout_s=0.2,
            period_s=0.01,
        )


def test_return_to_pose_on_the_emulated_follower():
    from actors.arm import FollowerArm
    from actors.emulated_robot import EMULATED_CALIBRATION, REPLY_TIMEOUT_MS, EmulatedSO101

    robot = EmulatedSO101(seed=4)
    arm = FollowerArm(robot.ports()["follower"], EMULATED_CALIBRATION, timeout_ms=REPLY_TIMEOUT_MS)
    try:
        recorded = arm.read()
        moved = recorded + np.array([15.0, -10.0, 10.0, 5.0, 0.0, 0.0])
        return_to_pose(arm, moved, tolerance=1.0, timeout_s=60.0)
        assert not np.allclose(arm.read(), recorded, atol=2.0)
        back = return_to_pose(arm, recorded, tolerance=1.0, timeout_s=60.0)  # the undo
        assert np.allclose(back, recorded, atol=1.0)
    finally:
        arm.shutdown()
        robot.close()


def test_keyboard_admin_asks_until_yes_or_no_and_api_responder_proposes():
    import io

    from actors.collection.episode import APIResponder, Attempt, KeyboardAdmin

    attempt = Attempt(3, {}, {}, np.zeros(6), np.zeros((2, 6)), 1, (0,), {}, {})
    shown = io.StringIO()
    assert KeyboardAdmin(io.StringIO("maybe\ny\n"), shown).review(attempt)
    assert shown.getvalue().count("state 3: candidate 1 of 2 executed; approve?") == 2
    assert not KeyboardAdmin(io.StringIO("n\n"), io.StringIO()).review(attempt)
    with pytest.raises(RuntimeError, match="the input ended"):
        KeyboardAdmin(io.StringIO(""), io.StringIO()).review(attempt)
    responder = APIResponder("remote", lambda obs: [1, 2, 3, 4, 5, obs["observation.state"][5]])
    proposed = responder.propose({"observation.state": np.full(6, 7.0)}, {})
    assert proposed.dtype == np.float32 and proposed.tolist() == [1, 2, 3, 4, 5, 7]
