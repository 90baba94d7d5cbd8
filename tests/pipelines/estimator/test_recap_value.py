"""The recap value's pure parts: bins, two-hot, V, N-step advantages, metrics, the model, the
returns of estimation, the state's normalization and the output manifest."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.dataset import DatasetError, LeRobotDataset, atomic_write_json, write_parquet
from pipelines.estimator.data import EpisodeFrames, state_normalization, value_batch
from pipelines.estimator.manifest import (
    MANIFEST,
    estimate_manifest,
    prepare_output,
    read_manifest,
)
from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig, load_checkpoint
from pipelines.estimator.recap import estimation_setup
from pipelines.estimator.value import (
    BINS,
    bin_centers,
    cross_entropy,
    expected_value,
    midpoint_auroc,
    n_step_advantages,
    outcomes_digest,
    two_hot,
    value_metrics,
)
from pipelines.labeling.progress_dataset import make_progress_dataset
from pipelines.recap.targets import episode_targets
from pipelines.runtime.checkpoints import write_checkpoint
from pipelines.vision.prompts import tokenize

# ----------------------------------------------------------------------------- bins and V


def test_two_hot_splits_each_target_between_its_neighbouring_bins():
    centers = bin_centers()
    assert len(centers) == BINS == 201 and centers[0] == -1 and centers[-1] == 0
    targets = np.array([-1.0, 0.0, -0.5, -0.123, -0.0025, -2.0, 0.5])
    probs = two_hot(targets)
    assert probs.shape == (7, 201) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1)
    assert ((probs > 0).sum(1) <= 2).all()
    assert np.allclose(probs @ centers, np.clip(targets, -1, 0), atol=1e-6)
    assert probs[0, 0] == 1 and probs[1, 200] == 1 and probs[2, 100] == 1
    # bins are 0.005 apart: -0.0025 is half-way between bin 199 (-0.005) and bin 200 (0)
    assert probs[4, 199] == pytest.approx(0.5) and probs[4, 200] == pytest.approx(0.5)
    assert probs[5, 0] == 1 and probs[6, 200] == 1  # clipped to [-1, 0]


def test_expected_value_and_cross_entropy():
    targets = np.array([-0.9, -0.31, -0.0])
    probs = torch.from_numpy(two_hot(targets))
    logits = torch.log(probs + 1e-12)
    assert expected_value(logits).numpy() == pytest.approx(targets, abs=1e-6)
    flat = torch.zeros(1, 201)
    assert float(expected_value(flat)) == pytest.approx(-0.5)  # uniform: the middle
    # the target distribution itself has the lowest cross-entropy
    best = cross_entropy(logits, probs)
    assert float(best) < float(cross_entropy(torch.zeros(3, 201), probs))
    assert float(best) < float(cross_entropy(logits.roll(1, dims=1), probs))


# ----------------------------------------------------------------------------- N-step


def test_n_step_advantage_by_hand_on_a_success():
    # T = 5, T_max = 5, c_fail = 5: unit 1/10, r = -0.1; targets -0.4 .. 0
    returns = episode_targets(5, True, 5, 1.0)
    assert returns.tolist() == pytest.approx([-0.4, -0.3, -0.2, -0.1, 0.0])
    values = np.array([-0.5, -0.3, -0.25, -0.1, -0.05])
    a = n_step_advantages(values, returns, -0.1, 2)
    # t=0..2: -0.2 + V[t+2] - V[t]; t=3, 4: t+2 passes the end (4): G[t] - V[t]
    want = [-0.2 - 0.25 + 0.5, -0.2 - 0.1 + 0.3, -0.2 - 0.05 + 0.25, -0.1 + 0.1, 0.0 + 0.05]
    assert a.dtype == np.float32 and a.tolist() == pytest.approx(want, abs=1e-6)


def test_n_step_advantage_by_hand_on_a_failure_and_past_the_end():
    # T = 3 of T_max = 5, failed: g = -(3 - t - 1) - 5, over 10: -0.7, -0.6, -0.5
    returns = episode_targets(3, False, 5, 1.0)
    assert returns.tolist() == pytest.approx([-0.7, -0.6, -0.5])
    values = np.full(3, -0.6)
    a = n_step_advantages(values, returns, -0.1, 1)
    assert a.tolist() == pytest.approx([-0.1, -0.1, 0.1])  # the last: G[2] - V[2]
    # N beyond the episode: every frame takes its return-to-go, failure penalty included
    a = n_step_advantages(values, returns, -0.1, 50)
    assert a.tolist() == pytest.approx([-0.1, 0.0, 0.1])
    assert n_step_advantages(np.array([-0.2]), np.array([-0.5]), -0.1, 1).tolist() == [
        pytest.approx(-0.3)
    ]


@pytest.mark.parametrize("success", [True, False])
def test_a_perfect_value_has_zero_advantage_everywhere(success):
    t_max, coef = 40, 0.5
    returns = episode_targets(31, success, t_max, coef)
    step = -1.0 / (t_max + coef * t_max)
    for n in (1, 7, 30, 31, 100):
        assert np.abs(n_step_advantages(returns, returns, step, n)).max() < 1e-6


def test_n_step_advantage_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="n_step 0: at least 1"):
        n_step_advantages(np.zeros(3), np.zeros(3), -0.1, 0)
    with pytest.raises(ValueError, match="one of each per frame"):
        n_step_advantages(np.zeros(3), np.zeros(4), -0.1, 1)


# ----------------------------------------------------------------------------- metrics


def test_midpoint_auroc_and_value_metrics():
    won = [np.array([-0.9, -0.5, -0.1]), np.array([-0.8, -0.4])]  # midpoints -0.5, -0.4
    lost = [np.array([-0.9, -0.7, -0.6]), np.array([-0.5, -0.5, -0.5])]  # -0.7, -0.5
    values = won + lost
    outcomes = [True, True, False, False]
    # pairs (success > failure): -0.5 vs -0.7 yes, vs -0.5 tie; -0.4 vs both yes -> 3.5 / 4
    assert midpoint_auroc(values, outcomes) == pytest.approx(0.875)
    assert np.isnan(midpoint_auroc(won, [True, True]))
    targets = [v + 0.1 for v in values]
    m = value_metrics(values, targets, outcomes)
    assert m["eval_mae"] == pytest.approx(0.1)
    assert m["eval_spearman_success"] == pytest.approx(1.0)
    assert m["eval_auroc_midpoint"] == pytest.approx(0.875)
    assert set(value_metrics(lost, lost, [False, False])) == {"eval_mae"}


def test_outcomes_digest_is_order_free_and_sees_every_pair():
    d = outcomes_digest({0: True, 3: False})
    assert d == outcomes_digest({3: False, 0: True})
    assert d != outcomes_digest({0: True, 3: True}) and d != outcomes_digest({0: True})


# ----------------------------------------------------------------------------- the model


def _recap_model(**kw):
    cfg = EstimatorConfig(variant="recap", cameras=["a", "b"], image_size=16, **kw)
    torch.manual_seed(0)
    return AdvantageEstimator(cfg).eval()


def test_recap_model_values_logits_tasks_and_state_normalization(tmp_path):
    model = _recap_model()
    model.set_state_normalization([100.0] * 6, [10.0] * 6)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 255, (4, 1, 2, 16, 16, 3), dtype=np.uint8))
    state = torch.full((4, 1, 6), 100.0)
    tokens = torch.from_numpy(tokenize(["grasp the red cube"] * 2 + ["open the drawer"] * 2, 64))
    with torch.no_grad():
        logits = model(images, state, tokens, logits=True)
        values = model(images, state, tokens)
        assert logits.shape == (4, 201)
        assert torch.allclose(values, expected_value(logits))
        assert ((values >= -1) & (values <= 0)).all()
        feats = model.encode(images.reshape(4, 2, 16, 16, 3))[:, None]
        assert torch.allclose(model.value(feats, state, tokens), values)
        # the task text is an input: another task, another value for the same frame
        other = torch.from_numpy(tokenize(["open the drawer"] * 4, 64))
        assert not torch.allclose(model(images, state, other)[:2], values[:2])
        # the state is normalized inside: (x - mean) / std
        z = model.value_logits(feats, state, tokens)
        model.set_state_normalization([0.0] * 6, [1.0] * 6)
        assert torch.allclose(model.value_logits(feats, torch.zeros(4, 1, 6), tokens), z)
    # the normalization is saved with the weights
    model.set_state_normalization([1.0, 2, 3, 4, 5, 6], [2.0] * 6)
    cfg = model.config
    write_checkpoint(
        tmp_path, "estimator", {"model": model.state_dict(), "step": 3},
        {"step": 3, "variant": "recap", "model": cfg.to_dict()},
    )  # fmt: skip
    loaded, loaded_cfg, step = load_checkpoint(tmp_path)
    assert step == 3 and loaded_cfg == cfg
    assert loaded.state_mean.tolist() == [1, 2, 3, 4, 5, 6]
    with torch.no_grad():
        assert torch.equal(loaded(images, state, tokens), model(images, state, tokens))


def test_progress_variants_keep_their_head():
    model = AdvantageEstimator(EstimatorConfig(variant="pi06", cameras=["a"], image_size=16))
    keys = set(model.state_dict())
    assert not {k for k in keys if k.startswith("prompt") or k.startswith("state_")}
    assert model.head[-1].__class__.__name__ == "Tanh" and model.head[-2].out_features == 1


def test_value_batch_takes_each_frames_target_and_its_episodes_task():
    def episode(e, n, task):
        images = np.arange(n, dtype=np.uint8)[:, None, None, None, None] * np.ones(
            (n, 1, 2, 2, 3), np.uint8
        )
        target = np.linspace(-0.9, 0.0, n).astype(np.float32)
        return EpisodeFrames(e, images, np.zeros((n, 3), np.float32), None, target, task)

    eps = [episode(0, 5, "red cube"), episode(1, 9, "blue drawer")]
    images, state, tokens, probs, target = value_batch(eps, 64, np.random.default_rng(0), 4096)
    assert images.shape == (64, 1, 1, 2, 2, 3) and state.shape == (64, 1, 3)
    frame = images[:, 0, 0, 0, 0, 0].astype(int)
    red = (tokens == tokenize(["red cube"], 4096)[0]).all(1)
    blue = (tokens == tokenize(["blue drawer"], 4096)[0]).all(1)
    assert red.any() and (red ^ blue).all()
    for which, ep in ((red, eps[0]), (~red, eps[1])):
        assert np.allclose(target[which], ep.value_target[frame[which]])
    assert np.allclose(probs @ bin_centers(), target, atol=1e-6)


# ----------------------------------------------------------------------------- estimation


class _Episodes:
    """What `estimation_setup` reads of a dataset (lengths, tasks, outcomes)."""

    def __init__(self, rows):
        self.root = Path("/data/ds")
        self.episodes = {e: {"length": n, "tasks": [task]} for e, (n, task, _) in rows.items()}
        self.episode_indices = sorted(rows)
        self._outcomes = {e: o for e, (_, _, o) in rows.items()}

    def episode_length(self, e):
        return self.episodes[e]["length"]

    def episode_outcome(self, e):
        return self._outcomes[e]


def test_estimation_returns_take_the_checkpoints_t_max_and_c_fail():
    ds = _Episodes({0: (10, "cube", True), 1: (30, "cube", False), 2: (8, "drawer", None)})
    meta = {"c_fail_coef": 0.5, "t_max": {"cube": 20}}
    with pytest.raises(DatasetError, match=r"1 episode\(s\) without an outcome .*episodes 2\)"):
        estimation_setup(ds, meta, 64, [0, 1, 2], 50, None)
    setup = estimation_setup(ds, meta, 64, [0, 1, 2], 5, "failure")
    # episode 0: the checkpoint's T_max 20, c_fail 10
    assert setup.episodes[0].returns.tolist() == pytest.approx(
        episode_targets(10, True, 20, 0.5).tolist()
    )
    assert setup.episodes[0].step_reward == pytest.approx(-1 / 30)
    # episode 1 is longer than the checkpoint's T_max: its own length (targets stay valid)
    assert setup.episodes[1].step_reward == pytest.approx(-1 / 45)
    assert setup.episodes[1].returns[0] == pytest.approx((-29 - 15) / 45)
    # a task the checkpoint never saw: the dataset's T_max (8), defaulted to a failure
    assert setup.episodes[2].returns[-1] == pytest.approx(-4 / 12)
    assert setup.episodes[2].tokens.tolist() == tokenize(["drawer"], 64).tolist()
    outcomes = setup.manifest["outcomes"]
    assert (outcomes["success"], outcomes["failure"], outcomes["defaulted"]) == (1, 2, 1)
    assert setup.manifest["n_step"] == 5 and setup.manifest["t_max"] == {"cube": 30, "drawer": 8}


# ----------------------------------------------------------------------------- data


def test_state_normalization_from_stats_json_or_the_episodes(tmp_path):
    root = make_progress_dataset(tmp_path / "ds", episodes=3, min_length=4, max_length=6)
    ds = LeRobotDataset(root)
    state = np.concatenate(
        [np.stack(ds.read_episode(e)["observation.state"].to_numpy(zero_copy_only=False))
         for e in (0, 2)]
    )  # fmt: skip
    got = state_normalization(ds, [0, 2])
    assert got["source"] == "training episodes"
    assert np.allclose(got["mean"], state.mean(0)) and min(got["std"]) >= 1e-2
    stats = {"observation.state": {"mean": [1.0] * 6, "std": [0.0, 2, 2, 2, 2, 2]}}
    atomic_write_json(root / "meta" / "stats.json", stats)
    got = state_normalization(LeRobotDataset(root), [0])
    assert got == {"mean": [1.0] * 6, "std": [0.01, 2, 2, 2, 2, 2], "source": "meta/stats.json"}
    stats["observation.state"]["mean"] = [1.0, 2.0]
    atomic_write_json(root / "meta" / "stats.json", stats)
    with pytest.raises(DatasetError, match="stats.json: observation.state's mean and std must"):
        state_normalization(LeRobotDataset(root), [0])


def test_manifest_differs_means_recompute(tmp_path):
    root = make_progress_dataset(tmp_path / "ds", episodes=2, min_length=4, max_length=6)
    ds = LeRobotDataset(root)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"weights")
    (ckpt / "estimator.json").write_text("{}")
    meta = {"variant": "recap", "step": 4}
    recap = {"n_step": 50, "outcomes": {"digest": "abc"}}
    manifest = estimate_manifest(ds, ckpt, meta, "data", recap)
    assert manifest["checkpoint"]["files"]["state.pt"]["size"] == 7
    assert set(manifest["source_files"]) == {
        "data/chunk-000/episode_000000.parquet", "data/chunk-000/episode_000001.parquet",
    }  # fmt: skip
    out = "data_RECAP_4"
    # a fresh folder: nothing to keep; the manifest is written
    assert prepare_output(ds, out, manifest) is False
    assert read_manifest(root / out) == manifest
    output = root / out / "chunk-000" / "episode_000000.parquet"
    write_parquet(output, ds.read_episode(0))
    # the same manifest: the files already written are kept (resume)
    assert prepare_output(ds, out, manifest) is True and output.exists()
    # anything that changes what the files were computed from: every file is recomputed
    changes = [
        estimate_manifest(ds, ckpt, meta, "data", {**recap, "n_step": 10}),
        estimate_manifest(ds, ckpt, meta, "data", {"n_step": 50, "outcomes": {"digest": "d"}}),
    ]
    (ckpt / "state.pt").write_bytes(b"weightz")  # same size, another hash
    changes.append(estimate_manifest(ds, ckpt, meta, "data", recap))
    path = root / "data" / "chunk-000" / "episode_000001.parquet"
    write_parquet(path, ds.read_episode(1).drop(["stage_progress_gt"]))
    changes.append(estimate_manifest(ds, ckpt, meta, "data", recap))
    for changed in changes:
        assert changed != manifest
        write_parquet(output, ds.read_episode(0))
        assert prepare_output(ds, out, changed) is False
        assert not output.exists() and read_manifest(root / out) == changed
        manifest = changed
    # output files without a manifest (unknown origin) are not reused either
    write_parquet(output, ds.read_episode(0))
    (root / out / MANIFEST).unlink()
    assert prepare_output(ds, out, manifest) is False and not output.exists()
    (root / out / MANIFEST).write_text("{not json")
    assert prepare_output(ds, out, manifest) is False
    assert json.loads((root / out / MANIFEST).read_text()) == manifest
