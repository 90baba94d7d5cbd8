"""Per-sample loss weights: AWR and IQL (RECAP), as pure torch functions.

* **AWR**: w = min(exp(A / temperature), max_weight), A from a dataset column
  (`absolute_advantage` by default, Stage 2's output).
* **IQL** (Kostrikov et al.; RECAP's weighting): V(s) is regressed on the target critic's
  min(Q1', Q2')(s, a) with the expectile loss |tau - 1(u < 0)| u^2 (tau = 0.7); Q1 and Q2 on the
  Bellman backup r + discount * (1 - done) * V(s') over the **next** frame s' (the closed
  LeRobot port used V of the same observation, which makes the advantage identically 0 in
  expectation); the target critic follows the online one by Polyak averaging (tau 0.005).
  A = min(Q1', Q2')(s, a) - V(s), and the weight is as for AWR, capped at `max_weight`
  (the port left it uncapped, so a few frames could take over a batch).
* Data-type weights multiply the advantage weights.

Every weight is detached and normalized to mean 1 over its batch, so the loss scale (and the
learning rate that suits it) does not depend on the temperature. Logged per batch: the mean and
max of the raw weights, the share clipped at `max_weight` and the effective sample size
(sum w)^2 / sum w^2 as a share of the batch (1: every sample counts fully).
"""

from __future__ import annotations

import torch

WEIGHTINGS = ("none", "awr", "iql")


def advantage_weights(
    advantage: torch.Tensor, temperature: float, max_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(min(exp(A / temperature), max_weight), clipped mask), detached."""
    a = advantage.detach().float()
    raw = torch.exp(torch.clamp(a / temperature, max=80.0))
    clipped = raw > max_weight
    return torch.clamp(raw, max=max_weight), clipped


def normalize_weights(weights: torch.Tensor) -> torch.Tensor:
    """Weights scaled to mean 1 over the batch (all-zero weights stay zero)."""
    w = weights.detach().float()
    mean = w.mean()
    return w / mean if mean > 0 else w


def effective_sample_share(weights: torch.Tensor) -> float:
    """(sum w)^2 / (n * sum w^2): the effective sample size as a share of the batch."""
    w = weights.detach().double()
    denom = len(w) * float((w * w).sum())
    return float(w.sum() ** 2) / denom if denom > 0 else 0.0


def weight_stats(weights: torch.Tensor, clipped: torch.Tensor | None = None) -> dict[str, float]:
    """Mean, max, clipped share and effective sample share of a batch's raw weights."""
    w = weights.detach().float()
    return {
        "weight_mean": float(w.mean()),
        "weight_max": float(w.max()),
        "weight_clipped": float(clipped.float().mean()) if clipped is not None else 0.0,
        "weight_ess": effective_sample_share(w),
    }


def candidate_softmax(action: torch.Tensor, candidates: torch.Tensor, scale: float) -> torch.Tensor:
    """pi(. | s, candidates): softmax over the n logged candidates (B x n x A) of minus their
    distance to the policy's action (B x A), in `scale` action units (B x n, detached).

    The discrete distribution the importance ratio needs: seed 000's propensity is a
    probability over the same candidate set, so the policy's probability must be one too (a
    continuous density divided by it is not an importance ratio). The same softmax as
    `pipelines.selection.selector.PolicyDistanceScorer` with temperature 1.
    """
    diff = candidates.detach().float() - action.detach().float()[:, None, :]
    distance = torch.sqrt((diff * diff).sum(-1))
    return torch.softmax(-distance / scale, dim=-1)


def importance_weights(
    pi: torch.Tensor, selected: torch.Tensor, propensity: torch.Tensor, max_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clamp(pi(a_sel | s, candidates) / propensity, 0, max_weight), clipped mask), detached.

    `pi`: B x n candidate probabilities; `selected`: the executed candidate's row, -1 on a
    plain frame (one candidate: pi = 1, propensity 1, weight 1).
    """
    sel = selected.long()
    plain = sel < 0
    pi_sel = pi.detach().gather(1, sel.clamp(min=0)[:, None])[:, 0]
    pi_sel = torch.where(plain, torch.ones_like(pi_sel), pi_sel)
    prop = torch.where(plain, torch.ones_like(pi_sel), propensity.detach().float())
    raw = pi_sel / prop
    clipped = raw > max_weight
    return torch.clamp(raw, 0.0, max_weight), clipped


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of |expectile - 1(diff < 0)| * diff^2 (diff = target - prediction)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff * diff).mean()


def bellman_target(
    reward: torch.Tensor, done: torch.Tensor, next_value: torch.Tensor, discount: float
) -> torch.Tensor:
    """r + discount * (1 - done) * V(s'), detached."""
    return (reward.float() + discount * (1.0 - done.float()) * next_value.float()).detach()


@torch.no_grad()
def soft_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(o.detach(), alpha=tau)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 over the chunk's unpadded steps and every action dimension (B)."""
    keep = (~is_pad).float()[..., None]
    per_step = (pred - target).abs() * keep
    steps = keep.sum(dim=(1, 2)).clamp(min=1.0) * pred.shape[-1]
    return per_step.sum(dim=(1, 2)) / steps
