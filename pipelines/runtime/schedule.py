"""The pure arithmetic of training runs: the learning-rate schedule and the held-out split."""

from __future__ import annotations

import math

import numpy as np


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0.

    A function of the step (not a scheduler's state), so a run resumed with more `--steps`
    simply continues on the longer schedule.
    """
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


def split_episodes(episodes: list[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) episodes; the held-out share drawn with `seed`."""
    episodes = sorted(episodes)
    n_held = int(round(len(episodes) * holdout)) if holdout > 0 else 0
    if len(episodes) > 1:
        n_held = min(max(n_held, 1 if holdout > 0 else 0), len(episodes) - 1)
    held = set(np.random.default_rng(seed).choice(episodes, size=n_held, replace=False).tolist())
    return [e for e in episodes if e not in held], sorted(held)
