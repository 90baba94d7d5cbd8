"""The RECAP value's math (pure numpy and torch): bins, two-hot targets, V, N-step advantages.

The value is distributional, as in π*0.6 and its ports (Evo-RL's pistar06, RLinf): `BINS`
(201) bins evenly over [-1, 0]; the model's logits are trained by cross-entropy against a
two-hot target (the target's probability split between its two neighbouring bins so that the
bins' expectation is the target exactly), and V is the expectation over the bins.

The N-step advantage of frame t of an episode of T frames (Evo-RL's `--acp.n_step`), in the
targets' normalized units (`pipelines.recap.targets`: one step costs r = -1 / (T_max + c_fail)):

    A_t = sum_{i<N} r_{t+i} + V(s_{t+N}) - V(s_t) = N r + V[t+N] - V[t]    where t + N <= T - 1
    A_t = G_t - V[t]                                                         where t + N > T - 1

G_t, the episode's normalized return-to-go from t, is the target of frame t (the failure
penalty included): the targets satisfy G_t = r + G_{t+1}, so both lines are the same estimate
with the value replaced by the return where the episode has ended.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch

BINS = 201
V_MIN, V_MAX = -1.0, 0.0


def bin_centers(bins: int = BINS) -> np.ndarray:
    """The value of each bin: `bins` points evenly over [V_MIN, V_MAX] (float64)."""
    return np.linspace(V_MIN, V_MAX, bins)


def two_hot(targets: np.ndarray, bins: int = BINS) -> np.ndarray:
    """N x bins float32 probabilities: each target (clipped to [-1, 0]) split between its two
    neighbouring bins, so that probabilities @ bin_centers == target."""
    y = np.clip(np.asarray(targets, dtype=np.float64), V_MIN, V_MAX)
    position = (y - V_MIN) / (V_MAX - V_MIN) * (bins - 1)
    low = np.minimum(np.floor(position).astype(np.int64), bins - 2)
    high_weight = position - low
    out = np.zeros((len(y), bins), dtype=np.float32)
    rows = np.arange(len(y))
    out[rows, low] = 1.0 - high_weight
    out[rows, low + 1] = high_weight
    return out


def expected_value(logits: torch.Tensor) -> torch.Tensor:
    """V: the expectation over the bins of softmax(logits) (B x bins -> B)."""
    centers = torch.linspace(V_MIN, V_MAX, logits.shape[-1], device=logits.device)
    return torch.softmax(logits.float(), dim=-1) @ centers


def cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the logits (B x bins) against target distributions (B x bins)."""
    return -(target_probs * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def n_step_advantages(
    values: np.ndarray, returns: np.ndarray, step_reward: float, n_step: int
) -> np.ndarray:
    """A_t for every frame of one episode (module docstring), float32.

    `values`: V(s_t); `returns`: the episode's normalized return-to-go G_t (its targets);
    `step_reward`: r = -1 / (T_max + c_fail); `n_step`: N >= 1.
    """
    if n_step < 1:
        raise ValueError(f"n_step {n_step}: at least 1")
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(returns, dtype=np.float64)
    if v.shape != g.shape or v.ndim != 1:
        raise ValueError(f"values {v.shape} and returns {g.shape}: one of each per frame")
    n = len(v)
    ahead = np.arange(n) + n_step
    inside = ahead <= n - 1
    bootstrapped = n_step * step_reward + v[np.minimum(ahead, n - 1)] - v
    return np.where(inside, bootstrapped, g - v).astype(np.float32)


def midpoint_auroc(values: Sequence[np.ndarray], outcomes: Sequence[bool]) -> float:
    """AUROC of telling successful from failed episodes by V at each episode's midpoint
    (frame n // 2); ties count one half. NaN unless both outcomes are present."""
    mid = np.array([np.asarray(v, dtype=np.float64)[len(v) // 2] for v in values])
    success = np.asarray(outcomes, dtype=bool)
    pos, neg = mid[success], mid[~success]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def value_metrics(
    values: Sequence[np.ndarray], targets: Sequence[np.ndarray], outcomes: Sequence[bool]
) -> dict:
    """The held-out evaluation of a value model over episodes: `eval_mae` (|V - target| over
    every frame), `eval_spearman_success` (Spearman of V with the target over the frames of
    successful episodes) and `eval_auroc_midpoint` (`midpoint_auroc`); a metric that needs
    episodes of an outcome there are none of is left out."""
    from scipy.stats import spearmanr  # scipy only for the evaluation

    v, t = np.concatenate(values), np.concatenate(targets)
    out = {"eval_mae": float(np.abs(v - t).mean())}
    won = [i for i, s in enumerate(outcomes) if s]
    if won:
        vs = np.concatenate([values[i] for i in won])
        ts = np.concatenate([targets[i] for i in won])
        if len(vs) > 1 and np.ptp(vs) > 0 and np.ptp(ts) > 0:
            out["eval_spearman_success"] = float(spearmanr(vs, ts).statistic)
    auroc = midpoint_auroc(values, outcomes)
    if np.isfinite(auroc):
        out["eval_auroc_midpoint"] = auroc
    return out


def outcomes_digest(outcomes: dict[int, bool]) -> str:
    """A short sha256 of the (episode, success) pairs, in episode order."""
    pairs = sorted((int(e), bool(s)) for e, s in outcomes.items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]
