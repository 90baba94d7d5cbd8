"""One training step of the policy (and, for IQL, its critics), in plain PyTorch.

The Ray Train job (`pipelines.policy.training`) builds a `PolicyLearner` on every worker and calls
`step` with batches from `make_batch`; nothing here knows about Ray, so a step runs (and is
tested) in one process.

Loss: the L1 distance between the predicted and the recorded normalized action chunk over the
chunk's unpadded steps, per sample, times the sample's weight (advantage weight x data-type
weight, detached, normalized to mean 1 per batch). With `weighting="iql"` the critic loss
(expectile V + twin-Q Bellman regression on the policy's detached image features) is added;
it moves only the critic heads.

Augmentation: every camera image is shifted at random by up to `image_size / 16` pixels
(edge-padded, DrQ's random shift), so the policy cannot memorize pixel positions of the few
hundred training episodes.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from pipelines.policy.config import PolicyLearnerConfig
from pipelines.policy.data import (
    FrameStore,
    PromptTable,
    chunk_indices,
    delta_timestamps,
    next_frames,
    prompt_rows,
)
from pipelines.policy.model import ChunkPolicy
from pipelines.policy.weighting import (
    advantage_weights,
    bellman_target,
    candidate_softmax,
    expectile_loss,
    importance_weights,
    masked_l1,
    normalize_weights,
    soft_update,
    weight_stats,
)
from pipelines.vision.images import random_shift


def make_batch(
    store: FrameStore,
    frames: np.ndarray,
    prompts: PromptTable,
    tokens: np.ndarray,
    config: PolicyLearnerConfig,
    chunk_size: int,
    type_weights: np.ndarray,
    rng: np.random.Generator,
    with_next: bool = False,
) -> dict[str, np.ndarray]:
    """Arrays for one step from the frames `frames` of `store`.

    `tokens`: the word ids of every row of `prompts.texts`; `type_weights`: the loss weight of
    each data-type code.
    """
    ends = store.episode_end[frames]
    idx, is_pad = chunk_indices(frames, ends, delta_timestamps(chunk_size, config.fps), config.fps)
    images = store.images[frames]
    if config.augment:
        images = random_shift(images, max(1, images.shape[2] // 16), rng)
    rows = prompt_rows(
        store.task_index[frames], prompts, config.conditioning, config.indicator_dropout, rng
    )
    batch = {
        "images": images,
        "state": store.state[frames],
        "actions": store.action[idx],
        "is_pad": is_pad,
        "tokens": tokens[rows],
        "type_weight": type_weights[store.data_type[frames]].astype(np.float32),
    }
    if store.advantage is not None:
        batch["advantage"] = store.advantage[frames]
    if store.propensity is not None:
        batch["propensity"] = store.propensity[frames]
        batch["candidates"] = store.candidates[frames]
        batch["selected"] = store.selected[frames]
    if with_next:
        nxt = next_frames(frames, ends)
        batch["next_images"] = store.images[nxt]
        batch["next_state"] = store.state[nxt]
        batch["reward"] = store.reward[frames]
        batch["done"] = store.done[frames]
    return batch


class Critic(nn.Module):
    """V(s) and twin Q(s, a) heads on the policy's detached features (s = images + state)."""

    def __init__(self, n_features: int, action_dim: int, hidden: int = 256):
        super().__init__()

        def mlp(n_in):
            return nn.Sequential(
                nn.Linear(n_in, hidden),
                nn.LayerNorm(hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, 1),
            )

        self.v = mlp(n_features)
        self.q1 = mlp(n_features + action_dim)
        self.q2 = mlp(n_features + action_dim)

    def value(self, s: torch.Tensor) -> torch.Tensor:
        return self.v(s).squeeze(1)

    def q(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([s, a], dim=1)
        return self.q1(sa).squeeze(1), self.q2(sa).squeeze(1)


class TrainModule(nn.Module):
    """The policy and (IQL) its critic in one module, so one DDP wrapper syncs both."""

    def __init__(self, policy: ChunkPolicy, critic: Critic | None):
        super().__init__()
        self.policy = policy
        self.critic = critic

    def forward(self, images, state, tokens, action0=None, next_images=None, next_state=None):
        features = self.policy.encode(images)
        out = {"chunk": self.policy.head_from_features(features, state, tokens)}
        if self.critic is not None:
            s = torch.cat([features.detach(), self.policy.normalize_state(state)], dim=1)
            out["s"] = s
            out["v"] = self.critic.value(s)
            out["q1"], out["q2"] = self.critic.q(s, action0)
            with torch.no_grad():
                nf = self.policy.encode(next_images)
                ns = torch.cat([nf, self.policy.normalize_state(next_state)], dim=1)
                out["next_v"] = self.critic.value(ns)
        return out


class PolicyLearner:
    """Optimizer, target critic and the step; `module` may be DDP-wrapped (`plain` is not)."""

    def __init__(
        self, module: nn.Module, plain: TrainModule, config: PolicyLearnerConfig, lr: float
    ):
        self.module = module
        self.plain = plain
        self.config = config
        self.opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
        self.target = copy.deepcopy(plain.critic) if plain.critic is not None else None
        if self.target is not None:
            self.target.requires_grad_(False)

    def state_dict(self) -> dict:
        out = {"model": self.plain.policy.state_dict(), "optimizer": self.opt.state_dict()}
        if self.target is not None:
            out["critic"] = self.plain.critic.state_dict()
            out["target_critic"] = self.target.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        self.plain.policy.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.target is not None:
            self.plain.critic.load_state_dict(state["critic"])
            self.target.load_state_dict(state["target_critic"])

    def step(self, batch: dict[str, np.ndarray], lr: float, device) -> dict[str, float]:
        cfg = self.config
        t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}
        policy = self.plain.policy
        target = policy.normalize_chunk(t["actions"], t["state"])
        iql = cfg.weighting == "iql"
        out = self.module(
            t["images"],
            t["state"],
            t["tokens"],
            action0=target[:, 0] if iql else None,
            next_images=t.get("next_images") if iql else None,
            next_state=t.get("next_state") if iql else None,
        )
        per_sample = masked_l1(out["chunk"], target, t["is_pad"])
        metrics: dict[str, float] = {"l1": float(per_sample.mean().detach())}
        weights, clipped = torch.ones_like(per_sample), None
        if cfg.weighting == "awr":
            weights, clipped = advantage_weights(t["advantage"], cfg.temperature, cfg.max_weight)
        critic_loss = torch.zeros((), device=per_sample.device)
        if iql:
            with torch.no_grad():
                tq1, tq2 = self.target.q(out["s"], target[:, 0])
                q_target = torch.minimum(tq1, tq2)
                advantage = q_target - out["v"]
            weights, clipped = advantage_weights(advantage, cfg.temperature, cfg.max_weight)
            y = bellman_target(t["reward"], t["done"], out["next_v"], cfg.discount)
            v_loss = expectile_loss(q_target - out["v"], cfg.expectile)
            q_loss = ((out["q1"] - y) ** 2).mean() + ((out["q2"] - y) ** 2).mean()
            critic_loss = v_loss + q_loss
            metrics.update(
                v_loss=float(v_loss.detach()),
                q_loss=float(q_loss.detach()),
                v_mean=float(out["v"].detach().mean()),
                advantage_mean=float(advantage.mean()),
            )
        if cfg.weighting != "none":
            metrics.update(weight_stats(weights, clipped))
        w = weights * t["type_weight"]
        if cfg.importance_weights:
            with torch.no_grad():
                action = policy.denormalize_chunk(out["chunk"].detach(), t["state"])[:, 0]
                pi = candidate_softmax(action, t["candidates"], cfg.candidate_scale)
            iw, iw_clipped = importance_weights(
                pi, t["selected"], t["propensity"], cfg.max_importance_weight
            )
            metrics.update({f"importance_{k}": v for k, v in weight_stats(iw, iw_clipped).items()})
            # self-normalized: sum(w L) / sum(w); otherwise the plain clipped ratio
            w = normalize_weights(w * iw) if cfg.self_normalize else normalize_weights(w) * iw
        else:
            w = normalize_weights(w)
        policy_loss = (w * per_sample).mean()
        loss = policy_loss + critic_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        if self.target is not None:
            soft_update(self.target, self.plain.critic, cfg.target_tau)
        metrics["loss"] = float(policy_loss.detach())
        return metrics
