"""Policy evaluation, the pure parts: Wilson intervals, McNemar's test, the success rule, arm
summaries and paired comparisons, arm specs and prompts."""

import numpy as np
import pytest

from pipelines import evaluation as evaluate
from pipelines.dataset import DatasetError
from pipelines.evaluation import stats

TASK = "reach and grasp the red cube"
BINARY = {0: f"{TASK}, Advantage: negative", 1: f"{TASK}, Advantage: positive"}


# ----------------------------------------------------------------------------- evaluation


def test_wilson_interval_against_known_values():
    assert stats.wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert stats.wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert stats.wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert stats.wilson_interval(81, 100) == pytest.approx((0.722212, 0.874852), abs=1e-6)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    from scipy.stats import binomtest

    for k, n in ((0, 10), (3, 7), (52, 100), (100, 100)):
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert stats.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_mcnemar_exact_against_known_values():
    from scipy.stats import binomtest

    assert stats.mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0
    for b, c in ((10, 2), (25, 5), (1, 9), (30, 12), (0, 7)):
        assert stats.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    first = [True, True, False, False, True]
    second = [True, False, True, True, False]
    assert stats.paired_counts(first, second) == {
        "both": 1, "only_first": 2, "only_second": 2, "neither": 0,
    }  # fmt: skip
    with pytest.raises(ValueError, match="unpaired"):
        stats.paired_counts([True], [True, False])


class _ScriptedEnv:
    """An env whose info['success'] follows a script; truncates after `limit` steps."""

    def __init__(self, success_at=None, limit=5, flips_back=False):
        self.success_at, self.limit, self.flips_back = success_at, limit, flips_back
        self.unwrapped = self
        self.fps = 10

    def reset(self, seed=None):
        self.t = 0
        return {"observation.images.front": np.zeros((4, 4, 3), np.uint8)}, {"success": False}

    def step(self, action):
        self.t += 1
        success = self.t == self.success_at or (
            self.flips_back is False and self.success_at is not None and self.t > self.success_at
        )
        terminated = False  # the rule does not rely on the env terminating on success
        truncated = self.t >= self.limit
        obs = {"observation.images.front": np.zeros((4, 4, 3), np.uint8)}
        return obs, float(success), terminated, truncated, {"success": success}


class _Counting:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, observation):
        return np.zeros(2, np.float32)


def test_success_rule_any_step_before_truncation():
    p = _Counting()
    r = evaluate.score_episode(_ScriptedEnv(success_at=3, flips_back=True), p, seed=7)
    assert (r.success, r.steps, r.steps_to_success, r.seed) == (True, 3, 3, 7)
    assert p.resets == 1
    r = evaluate.score_episode(_ScriptedEnv(success_at=None, limit=5), p, seed=0)
    assert (r.success, r.steps, r.steps_to_success) == (False, 5, None)
    r = evaluate.score_episode(_ScriptedEnv(success_at=5, limit=5), p, seed=0)
    assert (r.success, r.steps_to_success) == (True, 5)  # on the last step still counts
    r = evaluate.score_episode(_ScriptedEnv(success_at=9, limit=5), p, seed=0)
    assert not r.success  # after truncation: never reached


def test_arm_summaries_and_paired_comparison():
    def arm(name, wins, steps):
        outcomes = [
            evaluate.EpisodeResult(i, w, s, s if w else None)
            for i, (w, s) in enumerate(zip(wins, steps, strict=True))
        ]
        return evaluate.ArmResult(name, name, None, 1.0, outcomes)

    a = arm("bc", [True, False, False, True], [10, 200, 200, 30])
    b = arm("awbc", [True, True, True, False], [8, 20, 40, 200])
    s = b.summary()
    assert (s["episodes"], s["successes"], s["success_rate"]) == (4, 3, 0.75)
    assert s["mean_steps_to_success"] == pytest.approx(68 / 3)
    assert s["ci95"] == pytest.approx(list(stats.wilson_interval(3, 4)))
    c = evaluate.compare(a, b)
    assert c["difference"] == 0.25 and (c["only_arm"], c["only_baseline"]) == (2, 1)
    assert c["mcnemar_p"] == pytest.approx(stats.mcnemar_exact(1, 2))
    assert arm("x", [False], [200]).summary()["mean_steps_to_success"] is None


def test_arm_specs_and_prompts():
    src, opts = evaluate.parse_arm("runs/awbc/checkpoint_000003#prompt=negative#cfg=1.5#name=neg")
    assert src == "runs/awbc/checkpoint_000003"
    assert (opts.prompt, opts.cfg_scale, opts.name) == ("negative", 1.5, "neg")
    assert evaluate.parse_arm("controller:expert")[1].prompt is None  # the checkpoint's
    for bad in ("x#cfg=abc", "x#colour=red", "x#cfg", "x#cfg=-1"):
        with pytest.raises(DatasetError):
            evaluate.parse_arm(bad)
    meta = {"tasks": {"0": BINARY[0], "1": BINARY[1]}, "env": {"task": "reach_grasp"}}
    assert evaluate.resolve_prompt("positive", meta) == (BINARY[1], TASK)
    assert evaluate.resolve_prompt("negative", meta) == (BINARY[0], TASK)
    assert evaluate.resolve_prompt("none", meta) == (TASK, TASK)
    assert evaluate.resolve_prompt(BINARY[0], meta) == (BINARY[0], TASK)
    assert evaluate.resolve_prompt(TASK, meta) == (TASK, TASK)
    with pytest.raises(DatasetError, match="matches no task of the policy"):
        evaluate.resolve_prompt("reach and grasp the blue cube", meta)
    sliced = {"tasks": {str(i): f"{TASK}, Advantage: {i}" for i in range(3)}, "env": meta["env"]}
    assert evaluate.resolve_prompt("positive", sliced)[0] == f"{TASK}, Advantage: 2"
    assert evaluate.resolve_prompt("negative", sliced)[0] == f"{TASK}, Advantage: 0"
    bare = {"tasks": {"0": TASK}, "env": meta["env"]}
    with pytest.raises(DatasetError, match="carry no advantage labels"):
        evaluate.resolve_prompt("positive", bare)


# ----------------------------------------------------------------------------- checkpoints


def policy_checkpoint(folder, conditioning: str | None, step: int = 1):
    """A tiny real `policy` checkpoint trained (on paper) with `conditioning`."""
    import torch

    from pipelines.policy.model import ChunkPolicy, PolicyConfig
    from pipelines.runtime.checkpoints import write_checkpoint

    config = PolicyConfig(
        cameras=["observation.images.front"], chunk_size=5, image_size=16, hidden_dim=16
    )
    torch.manual_seed(0)
    meta = {
        "kind": "policy",
        "step": step,
        "model": config.to_dict(),
        "tasks": {str(k): v for k, v in BINARY.items()},
        "n_action_steps": 5,
        "env": {"task": "reach_grasp", "image_size": 16, "fps": 10, "action_mode": "joint"},
    }
    if conditioning is not None:
        meta["conditioning"] = conditioning
    folder.mkdir(parents=True)
    write_checkpoint(folder, "policy", {"model": ChunkPolicy(config).state_dict()}, meta)
    return folder


@pytest.mark.parametrize(
    "conditioning, wanted",
    [("none", TASK), ("prompt", BINARY[1]), (None, BINARY[1])],
)
def test_the_default_prompt_is_the_one_the_checkpoint_was_trained_with(
    tmp_path, conditioning, wanted
):
    path = policy_checkpoint(tmp_path / "ckpt", conditioning)
    loaded = evaluate.load_source(str(path), evaluate.ArmOptions())
    assert (loaded.prompt, loaded.bare_prompt) == (wanted, TASK)
    assert evaluate.EvalConfig(checkpoint=str(path)).prompt is None
    explicit = evaluate.load_source(str(path), evaluate.ArmOptions(prompt="negative"))
    assert explicit.prompt == BINARY[0]  # an explicit --prompt still wins
    meta = {"tasks": {"0": TASK}, "env": {"task": "reach_grasp"}}  # unlabeled, no conditioning
    assert evaluate.resolve_prompt(None, meta) == (TASK, TASK)


def test_a_run_folder_skips_a_partial_newest_checkpoint(tmp_path):
    from pipelines.runtime.checkpoints import CHECKPOINT_STATE

    run = tmp_path / "run"
    good = policy_checkpoint(run / "checkpoint_a", "none", step=1)
    partial = policy_checkpoint(run / "checkpoint_b", "none", step=2)
    data = (partial / CHECKPOINT_STATE).read_bytes()
    (partial / CHECKPOINT_STATE).write_bytes(data[: len(data) // 2])  # Ray's copy, mid-way
    assert evaluate.load_source(str(run), evaluate.ArmOptions()).source == str(good)
    (good / CHECKPOINT_STATE).write_bytes(b"")
    with pytest.raises(DatasetError, match="no loadable policy checkpoint"):
        evaluate.load_source(str(run), evaluate.ArmOptions())


def test_a_corrupt_checkpoint_given_directly_is_one_line(tmp_path, capsys):
    from pipelines import eval_policy
    from pipelines.runtime.checkpoints import CHECKPOINT_STATE

    path = policy_checkpoint(tmp_path / "ckpt", "none")
    data = (path / CHECKPOINT_STATE).read_bytes()
    (path / CHECKPOINT_STATE).write_bytes(data[: len(data) - 100])
    report = tmp_path / "out" / "report.json"
    code = eval_policy.main([str(path), "--no-mlflow", "--report", str(report)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{path / CHECKPOINT_STATE}: not a loadable checkpoint state" in err
    assert not (tmp_path / "out").exists()
