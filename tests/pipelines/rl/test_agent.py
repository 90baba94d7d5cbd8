"""DrQ-v2 + BC: the update, the BC mask, target clipping, the encoders, the monitor."""

import numpy as np
import pytest
import torch

from pipelines.rl.agent import AgentPolicy, DrQV2Agent, random_shift, sample_action
from pipelines.rl.config import AgentConfig, stddev
from pipelines.rl.monitor import QBoundMonitor, q_bound

CAMS = ["observation.images.front", "observation.images.wrist"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frozen_config(**kw):
    base = dict(encoder="frozen", frozen_dim=8, hidden_dim=32, feature_dim=16, cameras=CAMS)
    return AgentConfig(**{**base, **kw})


def frozen_batch(n=32, rng=None, interv=None, demo=None, stack=1):
    rng = rng or np.random.default_rng(0)

    def obs():
        return {
            "observation.state": rng.normal(size=(n, stack, 6)).astype(np.float32),
            "features": rng.normal(size=(n, stack, 8)).astype(np.float16),
        }

    return {
        "obs": obs(),
        "next_obs": obs(),
        "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        "reward": (rng.random(n) < 0.1).astype(np.float32),
        "discount": np.full(n, 0.99**3, np.float32),
        "intervention": np.zeros(n, bool) if interv is None else interv,
        "demo": np.zeros(n, bool) if demo is None else demo,
    }


def test_stddev_schedules():
    assert stddev("linear(0.2,0.05,5000)", 0) == pytest.approx(0.2)
    assert stddev("linear(0.2,0.05,5000)", 2500) == pytest.approx(0.125)
    assert stddev("linear(0.2,0.05,5000)", 10**6) == pytest.approx(0.05)
    assert stddev("0.1", 7) == 0.1
    with pytest.raises(ValueError):
        stddev("cosine(1,2)", 0)


def test_sampled_actions_stay_in_bounds_with_the_noise_clipped():
    torch.manual_seed(0)
    mean = torch.zeros(10000, 4)
    a = sample_action(mean, 1.0, 0.3)
    assert a.abs().max() <= 0.3 + 1e-6
    a = sample_action(torch.full((1000, 4), 0.95), 1.0, None)
    assert a.max() < 1.0 and a.min() > -1.0


def test_random_shift_moves_images_by_at_most_the_pad():
    x = torch.zeros(64, 3, 16, 16)
    x[:, :, 8, 8] = 1.0
    y = random_shift(x, 4)
    rows, cols = torch.nonzero(y[:, 0] == 1.0, as_tuple=True)[1:]
    assert y.shape == x.shape and (rows - 8).abs().max() <= 4 and (cols - 8).abs().max() <= 4
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 5  # it does shift


def test_the_bc_term_is_the_seeds_and_only_over_the_mask():
    interv = np.zeros(32, bool)
    interv[:5] = True
    batch = frozen_batch(interv=interv)
    for bc_on, demo, expect in [
        ("interventions", None, 5 / 32),
        ("interventions", np.ones(32, bool), 5 / 32),
        ("interventions+demos", np.r_[np.zeros(20, bool), np.ones(12, bool)], 17 / 32),
    ]:
        agent = DrQV2Agent(frozen_config(bc_weight=0.5, bc_on=bc_on))
        b = dict(batch, demo=np.zeros(32, bool) if demo is None else demo)
        m = agent.update([b], env_step=0)
        assert m["bc_share"] == pytest.approx(expect)
        assert m["bc_loss"] > 0
        assert m["actor_loss"] == pytest.approx(m["actor_q_loss"] + 0.5 * m["bc_loss"], rel=1e-4)
    agent = DrQV2Agent(frozen_config(bc_weight=0.5))
    m = agent.update([frozen_batch()], env_step=0)  # no intervention in the batch
    assert m["bc_loss"] == 0.0 and m["actor_loss"] == pytest.approx(m["actor_q_loss"])


def test_bc_alone_learns_the_demo_actions():
    """With the Q term's weight negligible next to bc_weight, the actor imitates the mask."""
    rng = np.random.default_rng(1)
    agent = DrQV2Agent(frozen_config(bc_weight=50.0, lr=1e-3), seed=1)
    feats = rng.normal(size=(64, 1, 8)).astype(np.float16)
    state = rng.normal(size=(64, 1, 6)).astype(np.float32)
    target = np.tanh(feats[:, 0, :4].astype(np.float32))
    batch = frozen_batch(64, rng, interv=np.ones(64, bool))
    batch["obs"] = {"features": feats, "observation.state": state}
    batch["action"] = target
    first = agent.update([batch], 0)["bc_loss"]
    for _ in range(150):
        last = agent.update([batch], 10**6)["bc_loss"]
    assert last < 0.2 * first


def test_utd_ratio_means_critic_updates_per_actor_update_and_targets_move_softly():
    agent = DrQV2Agent(frozen_config(utd_ratio=3, critic_tau=0.01))
    before = [p.clone() for p in agent.critic_target.parameters()]
    agent.update([frozen_batch(rng=np.random.default_rng(i)) for i in range(3)], 0)
    assert agent.critic_updates == 3 and agent.updates == 1
    moved = sum(
        float((p - b).abs().sum())
        for p, b in zip(agent.critic_target.parameters(), before, strict=True)
    )
    online = sum(
        float((p.detach() - b).abs().sum())
        for p, b in zip(agent.critic.parameters(), before, strict=True)
    )
    assert 0 < moved < online


def test_clip_target_q_caps_the_td_target_at_the_bound():
    batch = frozen_batch()
    batch["reward"] = np.full(32, 5.0, np.float32)
    clipped = DrQV2Agent(frozen_config(clip_target_q=True, q_bound=1.0), seed=2)
    free = DrQV2Agent(frozen_config(clip_target_q=False), seed=2)
    m_clip = clipped.update([batch], 0)
    m_free = free.update([batch], 0)
    assert m_clip["target_q_mean"] <= 1.0 + 1e-6 < m_free["target_q_mean"]
    assert m_clip["target_q_max"] > 1.0  # reported before clipping, for the monitor


def test_drqv2_encoder_trains_through_the_critic_only():
    cfg = AgentConfig(encoder="drqv2", cameras=CAMS, image_size=32, hidden_dim=32, frame_stack=3)
    agent = DrQV2Agent(cfg)
    rng = np.random.default_rng(0)

    def obs(n=8):
        o = {k: rng.integers(0, 255, (n, 3, 32, 32, 3), dtype=np.uint8) for k in CAMS}
        o["observation.state"] = rng.normal(size=(n, 3, 6)).astype(np.float32)
        return o

    batch = dict(frozen_batch(8), obs=obs(), next_obs=obs())
    enc_before = [p.clone() for p in agent.encoder.parameters()]
    m = agent.update([batch], 0)
    assert np.isfinite(m["critic_loss"])
    assert any(
        (p - b).abs().sum() > 0 for p, b in zip(agent.encoder.parameters(), enc_before, strict=True)
    )
    # the actor's loss does not reach the encoder: its gradient is none after an actor step
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in agent.encoder.parameters())
    policy = AgentPolicy(cfg)
    policy.load(agent.policy_state(), 7)
    one = {k: v[0] for k, v in obs(1).items()}
    a = policy.act(one)
    assert a.shape == (4,) and np.all(np.abs(a) <= 1) and policy.version == 7


def test_agent_state_round_trips():
    a = DrQV2Agent(frozen_config(), seed=3)
    for i in range(3):
        a.update([frozen_batch(rng=np.random.default_rng(i))], 0)
    b = DrQV2Agent(frozen_config(), seed=4)
    b.load_state_dict(a.state_dict())
    assert b.updates == 3
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        assert torch.equal(p, q)
    policy = AgentPolicy(frozen_config())
    policy.load(a.policy_state(), 3)
    obs = {
        "features": np.ones((1, 8), np.float16),
        "observation.state": np.zeros((1, 6), np.float32),
    }
    with torch.no_grad():
        want = a.actor(
            torch.ones(1, 8), a.codec.state({"observation.state": obs["observation.state"][None]})
        )
    assert np.allclose(policy.act(obs), want.numpy()[0], atol=1e-5)


def test_q_bound_and_monitor_alarms_after_patience():
    assert q_bound(1.0, 0.99, terminates=True) == 1.0
    assert q_bound(1.0, 0.99, terminates=False) == pytest.approx(100.0)
    mon = QBoundMonitor(1.0, patience=3)
    ok = {"q_mean": 0.5, "q_max": 0.9, "target_q_max": 0.95}
    bad = {"q_mean": 0.5, "q_max": 1.2, "target_q_max": 0.95}
    out = [mon.observe(s) for s in (bad, bad, ok, bad, bad, bad, bad, bad, ok, bad, bad, bad)]
    warnings = [w for w in out if w]
    assert len(warnings) == 2 and mon.alarms == 2 and "above its bound 1" in warnings[0]
    assert mon.exceeded_updates == 10 and mon.metrics()["q_above_bound"] == 1.0
    assert mon.observe({"q_mean": 1.005, "q_max": 1.005, "target_q_max": 1.0}) is None  # tolerance
