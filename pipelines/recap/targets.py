"""RECAP's value targets (Evo-RL's pistar06): normalized steps-to-success, failure penalized.

For frame t of an episode of length T of task k:

    g      = -(T - t - 1) - c_fail * [the episode failed]
    c_fail = c_fail_coef * T_max(k)        T_max(k): the longest episode of task k
    target = clip(g / (T_max(k) + c_fail), -1, 0)

c_fail in the denominator keeps a failed episode's targets inside [-1, 0] (normalizing by
T_max alone pushes them below -1). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

DEFAULT_OUTCOMES = (None, "failure")


class MissingOutcomeError(ValueError):
    """Episodes without an outcome, and no default outcome to take for them."""


def task_max_lengths(lengths: Sequence[int], tasks: Sequence[Hashable]) -> dict[Hashable, int]:
    """T_max(k): the longest episode of each task."""
    out: dict[Hashable, int] = {}
    for n, task in zip(lengths, tasks, strict=True):
        out[task] = max(out.get(task, 0), int(n))
    return out


def episode_targets(length: int, success: bool, t_max: int, c_fail_coef: float = 1.0) -> np.ndarray:
    """The targets of one episode's frames (float64, shape [length])."""
    if length < 1 or t_max < length:
        raise ValueError(f"length {length} and T_max {t_max}: need 1 <= length <= T_max")
    c_fail = _coef(c_fail_coef) * t_max
    g = -(length - np.arange(length, dtype=np.float64) - 1.0)
    if not success:
        g = g - c_fail
    return np.clip(g / (t_max + c_fail), -1.0, 0.0)


def value_targets(
    lengths: Sequence[int],
    tasks: Sequence[Hashable],
    outcomes: Sequence[bool | None],
    *,
    c_fail_coef: float = 1.0,
    default_outcome: str | None = None,
    episodes: Sequence[int] | None = None,
    dataset: str = "DATASET",
) -> list[np.ndarray]:
    """Every episode's targets (one array each, in order). An episode without an outcome
    (None) is refused with `MissingOutcomeError`, or taken as a failure with
    `default_outcome="failure"`; `episodes` and `dataset` name them in the message."""
    if default_outcome not in DEFAULT_OUTCOMES:
        raise ValueError(f"default_outcome {default_outcome!r}: None or 'failure'")
    _coef(c_fail_coef)
    if not len(lengths) == len(tasks) == len(outcomes):
        raise ValueError("lengths, tasks and outcomes: one of each per episode")
    for n in lengths:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"episode length {n!r}: must be a whole number >= 1")
    outcomes = resolve_outcomes(outcomes, default_outcome, episodes=episodes, dataset=dataset)
    t_max = task_max_lengths(lengths, tasks)
    return [
        episode_targets(int(n), o, t_max[k], c_fail_coef)
        for n, k, o in zip(lengths, tasks, outcomes, strict=True)
    ]


def resolve_outcomes(
    outcomes: Sequence[bool | None],
    default_outcome: str | None = None,
    *,
    episodes: Sequence[int] | None = None,
    dataset: str = "DATASET",
) -> list[bool]:
    """The outcome each episode is taken with: its own, or a failure for one without (None)
    when `default_outcome="failure"`; without a default, `MissingOutcomeError` names the
    episodes (`episodes`, default 0, 1, ...) and how to add their outcomes."""
    if default_outcome not in DEFAULT_OUTCOMES:
        raise ValueError(f"default_outcome {default_outcome!r}: None or 'failure'")
    ids = list(range(len(outcomes))) if episodes is None else list(episodes)
    missing = [ep for ep, o in zip(ids, outcomes, strict=True) if o is None]
    if missing and default_outcome is None:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise MissingOutcomeError(
            f"{dataset}: {len(missing)} episode(s) without an outcome (episode_success; "
            f"episodes {shown}); add them with `flywheel outcomes {dataset} --from "
            f"csv:FILE|reward|set:EPISODES=success`, or take them as failures with "
            f"--default-outcome failure"
        )
    return [bool(o) for o in outcomes]


def _coef(c_fail_coef: float) -> float:
    value = float(c_fail_coef)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"c_fail_coef {c_fail_coef!r}: must be a number >= 0")
    return value
