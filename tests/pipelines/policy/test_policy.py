"""Stage 3, the pure parts: chunk targets, prompts, weights, IQL, statistics, the success rule."""

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipelines import evaluation as evaluate
from pipelines.dataset import DatasetError
from pipelines.policy.config import PolicyLearnerConfig
from pipelines.policy.data import (
    DATA_TYPES,
    FrameStore,
    PromptTable,
    chunk_indices,
    data_type_codes,
    delta_timestamps,
    label_of,
    next_frames,
    normalization_stats,
    parse_data_type_weights,
    prompt_rows,
    sampling_probabilities,
)
from pipelines.policy.learner import (
    Critic,
    PolicyLearner,
    TrainModule,
    make_batch,
)
from pipelines.policy.model import ChunkPolicy, PolicyConfig, PromptEncoder, tokenize, word_id
from pipelines.policy.runner import ChunkPolicyRunner, guided
from pipelines.policy.weighting import (
    advantage_weights,
    bellman_target,
    effective_sample_share,
    expectile_loss,
    masked_l1,
    normalize_weights,
    soft_update,
    weight_stats,
)
from pipelines.vision.images import random_shift

TASK = "reach and grasp the red cube"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


BINARY = {0: f"{TASK}, Advantage: negative", 1: f"{TASK}, Advantage: positive"}

# ----------------------------------------------------------------------------- chunk targets


def test_delta_timestamps_clamp_and_pad_at_the_episode_end():
    assert delta_timestamps(3, 10) == [0.0, 0.1, 0.2]
    assert delta_timestamps(2, 30) == [0.0, 1 / 30]
    # two episodes back to back: frames 0-4 and 5-6
    ends = np.array([4, 4, 4, 4, 4, 6, 6])
    frames = np.array([0, 3, 4, 5, 6])
    idx, pad = chunk_indices(frames, ends[frames], delta_timestamps(3, 10), 10)
    assert idx.tolist() == [[0, 1, 2], [3, 4, 4], [4, 4, 4], [5, 6, 6], [6, 6, 6]]
    assert pad.tolist() == [
        [False, False, False],
        [False, False, True],
        [False, True, True],
        [False, False, True],
        [False, True, True],
    ]
    # a chunk never reaches into the next episode
    assert (idx <= ends[frames][:, None]).all()
    # delta timestamps at another rate: every other frame
    idx, pad = chunk_indices(np.array([0]), np.array([4]), [0.0, 0.2, 0.4, 0.6], 10)
    assert idx.tolist() == [[0, 2, 4, 4]] and pad.tolist() == [[False, False, False, True]]
    assert next_frames(frames, ends[frames]).tolist() == [1, 4, 4, 6, 6]


def _store(lengths, task_index=None, data_type=None, size=4, cams=1):
    n = sum(lengths)
    parts, start = [], 0
    for length in lengths:
        f = np.arange(start, start + length)
        parts.append(
            {
                "images": (f[:, None, None, None, None] * np.ones((1, cams, size, size, 3)))
                .astype(np.uint8)
                .reshape(length, cams, size, size, 3),
                "state": np.stack([f, -f], 1).astype(np.float32),
                "action": np.stack([f + 0.5, -f - 0.5], 1).astype(np.float32),
                "task_index": np.zeros(length, np.int64)
                if task_index is None
                else np.asarray(task_index[start : start + length]),
                "data_type": np.zeros(length, np.int8)
                if data_type is None
                else np.asarray(data_type[start : start + length]),
                "reward": (f == start + length - 1).astype(np.float32),
                "done": (f == start + length - 1),
                "advantage": np.linspace(-1, 1, length).astype(np.float32),
            }
        )
        start += length
    store = FrameStore.concat(parts, list(range(len(lengths))))
    assert len(store) == n
    return store


def test_batches_take_chunks_and_next_frames_from_the_same_episode():
    store = _store([5, 2])
    assert store.episode_end.tolist() == [4, 4, 4, 4, 4, 6, 6]
    prompts = PromptTable.from_tasks({0: BINARY[1]})
    tokens = tokenize(prompts.texts, 64)
    cfg = PolicyLearnerConfig(conditioning="none", augment=False)
    rng = np.random.default_rng(0)
    b = make_batch(
        store, np.array([3, 6]), prompts, tokens, cfg, 3, np.ones(4, np.float32), rng, True
    )
    assert b["actions"][:, :, 0].tolist() == [[3.5, 4.5, 4.5], [6.5, 6.5, 6.5]]
    assert b["is_pad"].tolist() == [[False, False, True], [False, True, True]]
    assert b["next_images"][:, 0, 0, 0, 0].tolist() == [4, 6]
    assert b["next_state"][:, 0].tolist() == [4, 6]
    assert b["reward"].tolist() == [0, 1] and b["done"].tolist() == [False, True]
    assert (b["tokens"] == tokens[prompts.bare[0]]).all()  # BC: the bare task text


def test_normalization_stats_per_chunk_step():
    states = [np.zeros((3, 1), np.float32), np.ones((2, 1), np.float32)]
    actions = [np.array([[1.0], [2.0], [3.0]]), np.array([[5.0], [7.0]])]
    out = normalization_stats(states, actions, 2, "relative")
    # step 0: action - state = 1, 2, 3, 4, 6; step 1 (clamped): 2, 3, 3, 6, 6
    assert np.allclose(out["action"]["mean"], [[3.2], [4.0]])
    want_std = [[np.std([1, 2, 3, 4, 6])], [np.std([2, 3, 3, 6, 6])]]
    assert np.allclose(out["action"]["std"], want_std)
    assert out["state"]["mean"] == pytest.approx([0.4])
    absolute = normalization_stats(states, actions, 2, "absolute")
    assert np.allclose(absolute["action"]["mean"], [[3.6], [3.6]])
    flat = normalization_stats([np.zeros((2, 1))], [np.zeros((2, 1))], 1, "absolute")
    assert flat["action"]["std"] == [[0.01]] and flat["state"]["std"] == [0.01]  # never ~0


# ----------------------------------------------------------------------------- prompts


def test_prompt_hashing_tokenizer():
    assert evaluate.PROMPT_CHOICES == ("positive", "negative", "none")
    from pipelines.policy.model import prompt_words

    assert prompt_words("Reach and GRASP the red cube, Advantage: positive") == [
        "reach", "and", "grasp", "the", "red", "cube", "advantage", "positive",
    ]  # fmt: skip
    digest = hashlib.blake2b(b"positive", digest_size=8).digest()
    assert word_id("positive", 4096) == 1 + int.from_bytes(digest, "little") % 4095
    ids = tokenize([BINARY[1], TASK, "a never seen text, Advantage: 3"], 4096)
    assert ids.shape == (3, 8) and ids.dtype == np.int64
    assert (ids[1, 6:] == 0).all() and (ids[1, :6] > 0).all()  # padded with 0
    assert ((ids >= 0) & (ids < 4096)).all()
    assert ids[0, 7] != tokenize([BINARY[0]], 4096)[0, 7]
    assert tokenize(["Cube!"], 16).tolist() == tokenize(["cube"], 16).tolist()
    # stable across processes (Python's own hash() is salted per process)
    code = (
        "from pipelines.policy.model import tokenize; print(tokenize(['red cube'], 4096).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tokenize(["red cube"], 4096).tolist())


def test_prompt_encoder_averages_words_and_ignores_padding():
    torch.manual_seed(0)
    enc = PromptEncoder(64, 5)
    ids = torch.from_numpy(tokenize([TASK, BINARY[1], BINARY[0]], 64))
    out = enc(ids)
    words = enc.bag.weight[ids[0, :6]]
    assert torch.allclose(out[0], words.mean(0), atol=1e-6)
    assert not torch.allclose(out[1], out[2])  # the label changes the prompt vector


def test_prompt_table_and_indicator_dropout():
    assert label_of(BINARY[1]) == "positive" and label_of(TASK) is None
    assert label_of(f"{TASK}, Advantage: 3") == "3"
    table = PromptTable.from_tasks(BINARY)
    assert table.texts == [BINARY[0], TASK, BINARY[1]]
    assert table.labeled.tolist() == [0, 2] and table.bare.tolist() == [1, 1]
    assert table.top.tolist() == [False, True]
    slices = PromptTable.from_tasks({i: f"{TASK}, Advantage: {i}" for i in range(4)})
    assert slices.top.tolist() == [False, False, False, True]
    texts = [f"{t}, Advantage: {lab}" for t in "ab" for lab in ("negative", "positive")]
    two = PromptTable.from_tasks(dict(enumerate(texts)))
    assert [two.texts[r] for r in two.bare] == ["a", "a", "b", "b"]
    assert two.top.tolist() == [False, True, False, True]

    ti = np.tile([0, 1], 5000)
    rng = np.random.default_rng(0)
    assert (prompt_rows(ti, table, "none", 0.3, rng) == 1).all()
    assert (prompt_rows(ti, table, "prompt", 0.0, rng) == table.labeled[ti]).all()
    assert (prompt_rows(ti, table, "prompt", 1.0, rng) == 1).all()
    rows = prompt_rows(ti, table, "prompt", 0.3, rng)
    dropped = rows == 1
    assert abs(dropped.mean() - 0.3) < 0.02
    assert (rows[~dropped] == table.labeled[ti[~dropped]]).all()


# ----------------------------------------------------------------------------- data types


def test_data_type_weights_and_balanced_sampling():
    assert parse_data_type_weights("demo=1,auto=1,intervention=2") == {
        "demo": 1.0, "auto": 1.0, "intervention": 2.0,
    }  # fmt: skip
    assert parse_data_type_weights("intervention=3") == {"demo": 1, "auto": 1, "intervention": 3}
    for bad, why in (("robot=2", "not <type>=<weight>"), ("demo=x", "not a number"),
                     ("demo=-1", ">= 0"), ("demo", "not <type>=<weight>")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_data_type_weights(bad)
    codes = data_type_codes(["demo", "auto", "intervention", "auto", "other"])
    assert codes.tolist() == [0, 1, 2, 1, -1]
    assert sampling_probabilities(codes, False) is None
    codes = np.array([0] * 80 + [1] * 15 + [2] * 5)
    p = sampling_probabilities(codes, True)
    assert p.sum() == pytest.approx(1)
    for c in range(3):
        assert p[codes == c].sum() == pytest.approx(1 / 3)
    assert DATA_TYPES == ("demo", "auto", "intervention")


# ----------------------------------------------------------------------------- weights


def test_awr_weights_are_clipped_detached_and_normalized():
    a = torch.tensor([0.0, 0.5, 2.0, -1.0], requires_grad=True)
    w, clipped = advantage_weights(a, 0.5, 20.0)
    assert w.tolist() == pytest.approx([1.0, math.e, 20.0, math.exp(-2)])
    assert clipped.tolist() == [False, False, True, False]
    assert not w.requires_grad
    n = normalize_weights(w)
    assert float(n.mean()) == pytest.approx(1.0)
    assert (n / n[0]).tolist() == pytest.approx((w / w[0]).tolist())
    s = weight_stats(w, clipped)
    assert s["weight_max"] == 20.0 and s["weight_clipped"] == 0.25
    assert s["weight_mean"] == pytest.approx(float(w.mean()))
    assert s["weight_ess"] == pytest.approx(float(w.sum()) ** 2 / (4 * float((w * w).sum())))
    assert effective_sample_share(torch.ones(8)) == 1.0
    assert effective_sample_share(torch.tensor([1.0, 0, 0, 0])) == 0.25
    assert advantage_weights(torch.tensor([1000.0]), 0.5, 20.0)[0].tolist() == [20.0]  # no inf
    assert normalize_weights(torch.zeros(3)).tolist() == [0, 0, 0]


def test_masked_l1_ignores_padded_steps():
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[1.0, 1], [2, 2], [9, 9]], [[4.0, 0], [9, 9], [9, 9]]])
    pad = torch.tensor([[False, False, True], [False, True, True]])
    assert masked_l1(pred, target, pad).tolist() == pytest.approx([1.5, 2.0])


def test_expectile_loss_bellman_target_and_soft_update():
    diff = torch.tensor([1.0, -1.0, 2.0, -2.0])
    assert float(expectile_loss(diff, 0.7)) == pytest.approx((0.7 + 0.3 + 0.7 * 4 + 0.3 * 4) / 4)
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(float((0.5 * diff**2).mean()))
    y = bellman_target(
        torch.tensor([0.0, 1.0, 0.0]), torch.tensor([False, True, False]),
        torch.tensor([0.5, 0.8, 2.0]), 0.99,
    )  # fmt: skip
    assert y.tolist() == pytest.approx([0.495, 1.0, 1.98])
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = target.weight.detach().clone()
    soft_update(target, online, 0.005)
    want = 0.995 * before + 0.005 * online.weight.detach()
    assert torch.allclose(target.weight, want)


def test_iql_critic_learns_discounted_returns_from_the_next_frame():
    """Expectile V, Bellman Q over the next state, on a 5-state chain: V(s_k) -> g^(4-k)."""
    torch.manual_seed(0)
    n, gamma = 5, 0.9
    s = torch.eye(n)
    nxt = torch.eye(n)[torch.tensor([1, 2, 3, 4, 4])]
    reward = torch.tensor([0.0, 0, 0, 0, 1])
    done = torch.tensor([False, False, False, False, True])
    action = torch.zeros(n, 1)
    critic = Critic(n, 1, hidden=32)
    target = Critic(n, 1, hidden=32)
    target.load_state_dict(critic.state_dict())
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for _ in range(600):
        q1, q2 = critic.q(s, action)
        v = critic.value(s)
        with torch.no_grad():
            tq = torch.minimum(*target.q(s, action))
            y = bellman_target(reward, done, critic.value(nxt), gamma)
        loss = expectile_loss(tq - v, 0.7) + ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        soft_update(target, critic, 0.05)
    want = gamma ** torch.arange(4, -1, -1.0)  # V(s) = Q(s, a) with one action
    assert torch.allclose(critic.value(s).detach(), want, atol=0.03)


def _tiny_policy(chunk=3, cams=1, size=16, frame="relative"):
    cfg = PolicyConfig(
        cameras=[f"observation.images.c{i}" for i in range(cams)],
        state_dim=2, action_dim=2, chunk_size=chunk, image_size=size,
        feature_dim=8, hidden_dim=16, prompt_vocab=64, prompt_dim=4, action_frame=frame,
    )  # fmt: skip
    torch.manual_seed(0)
    return ChunkPolicy(cfg)


def test_learner_steps_awr_and_iql_and_uses_the_next_frame():
    store = _store([6, 5], task_index=[0, 1] * 5 + [1], size=16)
    prompts = PromptTable.from_tasks(BINARY)
    tokens = tokenize(prompts.texts, 64)
    for weighting in ("none", "awr", "iql"):
        policy = _tiny_policy()
        stats_ = normalization_stats([store.state], [store.action], 3, "relative")
        policy.set_normalization(stats_)
        critic = Critic(8 + 2, 2) if weighting == "iql" else None
        module = TrainModule(policy, critic)
        cfg = PolicyLearnerConfig(weighting=weighting)
        learner = PolicyLearner(module, module, cfg, 1e-3)
        rng = np.random.default_rng(0)
        b = make_batch(
            store, np.arange(11), prompts, tokens, cfg, 3, np.ones(4, np.float32), rng,
            weighting == "iql",
        )  # fmt: skip
        before = [p.detach().clone() for p in policy.parameters()]
        m = learner.step(b, 1e-3, "cpu")
        assert np.isfinite(m["loss"]) and m["l1"] > 0
        assert any(not torch.equal(a, p) for a, p in zip(before, policy.parameters(), strict=True))
        if weighting != "none":
            assert {"weight_mean", "weight_max", "weight_clipped", "weight_ess"} <= set(m)
        if weighting == "iql":
            assert {"v_loss", "q_loss", "advantage_mean"} <= set(m)
            # the critic's target is V of the *next* frame's features
            t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}
            out = module(
                t["images"], t["state"], t["tokens"], torch.zeros(11, 2),
                t["next_images"], t["next_state"],
            )  # fmt: skip
            nf = policy.encode(t["next_images"])
            ns = torch.cat([nf, policy.normalize_state(t["next_state"])], 1)
            assert torch.allclose(out["next_v"], critic.value(ns).detach(), atol=1e-6)
            cur = torch.cat([policy.encode(t["images"]), policy.normalize_state(t["state"])], 1)
            assert not torch.allclose(out["next_v"], critic.value(cur).detach())
            # the critic sees detached features: its loss does not move the encoder
            assert out["s"].requires_grad is False or not out["s"].grad_fn
            sd = learner.state_dict()
            assert {"model", "optimizer", "critic", "target_critic"} <= set(sd)


def test_random_shift_is_bounded():
    rng = np.random.default_rng(0)
    images = np.zeros((3, 2, 16, 16, 3), np.uint8)
    images[:, :, 8, 8] = 255
    out = random_shift(images, 2, rng)
    assert out.shape == images.shape
    for i in range(3):
        for j in range(2):
            y, x = np.argwhere(out[i, j, :, :, 0] == 255)[0]
            assert abs(y - 8) <= 2 and abs(x - 8) <= 2
    assert random_shift(images, 0, rng) is images


# ----------------------------------------------------------------------------- the model


def test_model_predicts_chunks_in_dataset_units():
    policy = _tiny_policy(chunk=3, cams=2).eval()
    stats_ = {
        "state": {"mean": [1.0, 2.0], "std": [2.0, 2.0]},
        "action": {"mean": [[0.5, 0.5]] * 3, "std": [[3.0, 1.0]] * 3},
    }
    policy.set_normalization(stats_)
    images = torch.randint(0, 255, (4, 2, 16, 16, 3), dtype=torch.uint8)
    state = torch.randn(4, 2)
    tokens = torch.from_numpy(tokenize([BINARY[1]] * 4, 64))
    norm = policy(images, state, tokens)
    assert norm.shape == (4, 3, 2)
    raw = policy.predict(images, state, tokens)
    assert torch.allclose(raw, norm * torch.tensor([3.0, 1.0]) + 0.5 + state[:, None, :])
    assert torch.allclose(policy.normalize_chunk(raw, state), norm, atol=1e-5)
    assert torch.equal(raw, policy.predict(images, state, tokens))  # deterministic
    absolute = _tiny_policy(frame="absolute").eval()
    assert torch.allclose(absolute.denormalize_chunk(norm[:, :, :], state), norm)
    with pytest.raises(ValueError, match="encoder 'vit'"):
        PolicyConfig(encoder="vit")


def test_runner_executes_n_action_steps_then_predicts_again_and_guides():
    assert guided(np.array([2.0]), np.array([1.0]), 1.0).tolist() == [2.0]
    assert guided(np.array([2.0]), np.array([1.0]), 2.0).tolist() == [3.0]
    assert guided(np.array([2.0]), np.array([1.0]), 0.0).tolist() == [1.0]
    policy = _tiny_policy(chunk=4, cams=1).eval()
    calls = []
    real = policy.predict

    def counting(*a):
        calls.append(a[0].shape[0])
        return real(*a)

    policy.predict = counting
    runner = ChunkPolicyRunner(policy, BINARY[1], TASK, cfg_scale=1.0, n_action_steps=3)
    obs = {"observation.images.c0": np.zeros((32, 32, 3), np.uint8), "observation.state": [0, 0]}
    actions = [runner.act(obs) for _ in range(7)]
    assert len(calls) == 3 and calls == [1, 1, 1]  # steps 0, 3, 6
    chunk = runner.chunk(obs)
    assert np.allclose(actions[0], chunk[0]) and np.allclose(actions[2], chunk[2])
    runner.reset()
    runner.act(obs)
    assert len(calls) == 5
    guided_runner = ChunkPolicyRunner(policy, BINARY[1], TASK, cfg_scale=1.5, n_action_steps=3)
    cond = ChunkPolicyRunner(policy, BINARY[1], TASK).chunk(obs)
    uncond = ChunkPolicyRunner(policy, TASK, TASK).chunk(obs)
    assert np.allclose(guided_runner.chunk(obs), uncond + 1.5 * (cond - uncond), atol=1e-5)


def test_reads_a_v30_dataset_written_by_lerobot():
    """LeRobot 0.6.1's own v3.0 output (one multi-episode parquet and H.264 video file)."""
    from pathlib import Path

    from pipelines.dataset import LeRobotDataset
    from pipelines.policy.config import PolicyTrainConfig
    from pipelines.policy.data import load_episode
    from pipelines.policy.training import prepare

    root = Path(__file__).resolve().parents[2] / "data" / "lerobot061_v30_h264"  # vendored
    cfg = PolicyTrainConfig.from_flags(
        dataset=str(root), conditioning="none", image_size=16, holdout=0
    )
    job = prepare(cfg)
    ds, meta, episodes, held = (
        LeRobotDataset(job.dataset),
        job.meta,
        job.train_episodes,
        job.held_episodes,
    )
    assert ds.version == "v3.0" and episodes == [0, 1, 2] and held == []
    assert meta["train_frames"] == 135 and meta["tasks"] == {"0": "pick the cube"}
    assert meta["model"]["cameras"] == ["observation.images.front"]
    assert meta["env"]["image_size"] == 64 and meta["env"]["action_mode"] == "joint"
    store = FrameStore.concat(
        [load_episode(ds, e, meta["model"]["cameras"], 16) for e in episodes], episodes
    )
    assert len(store) == 135 and store.episode_end[[0, 30, 75, 134]].tolist() == [29, 74, 134, 134]
    assert store.images.shape == (135, 1, 16, 16, 3) and store.images.std() > 0  # decoded frames
    with pytest.raises(DatasetError, match="needs advantage labels"):
        prepare(PolicyTrainConfig.from_flags(dataset=str(root), image_size=16))


def test_a_run_from_before_an_option_existed_resumes_only_at_its_default(tmp_path):
    from pipelines.policy.config import KIND, PolicyTrainConfig
    from pipelines.runtime.checkpoints import check_resume, write_checkpoint

    recipe = PolicyTrainConfig("").recipe
    old = {k: v for k, v in recipe.items() if k != "importance_weights"}  # written before it
    ckpt = tmp_path / "run" / "checkpoint_1"
    ckpt.mkdir(parents=True)  # a whole checkpoint: a broken one is skipped when resuming
    write_checkpoint(ckpt, KIND, {"step": 5}, {"kind": KIND, "step": 5, "recipe": old})
    found = check_resume(tmp_path / "run", KIND, recipe, "run", "recipe", recipe)
    assert found["step"] == 5
    with pytest.raises(DatasetError, match="importance_weights False .this command: True"):
        check_resume(
            tmp_path / "run", KIND, {**recipe, "importance_weights": True}, "run", "recipe", recipe
        )
    with pytest.raises(DatasetError, match="importance_weights None"):
        check_resume(tmp_path / "run", KIND, recipe, "run", "recipe")  # without the defaults
