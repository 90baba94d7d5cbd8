"""Stage-0 advantage math: rewards from progress, stages, percentile cuts, labels.

Pure numpy, no I/O. The numbers are those of the stage-advantage reference `gt_label.py`
run under numpy<2, reproduced exactly whatever numpy is installed here:

* reward per episode, float32. From `progress`: ``r[i] = p[i+C] - p[i]`` while ``i + C < n``
  (the difference in the column's dtype), else ``(p[n-1] - p[i]) / (n - i) * C`` with the
  difference in the column's dtype and the division and product in float64, rounded once to
  float32. From `absolute_advantage` / `relative_advantage`: the column cast to float32.
* stage of a frame: 0 when K = 1, else ``min(int(float64(spg) / (1.0 / K)), K - 1)``.
* cuts per stage from numpy 1.x's linear percentile. With K = 1 the reference collects the
  rewards as Python floats (float64); with K > 1 as numpy float32 scalars, which makes numpy 1.x
  take the difference of neighbouring order statistics in float32 inside `percentile`; and
  compares in float32 (K = 1) or float64 (K > 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ADVANTAGE_SOURCES = ("progress", "absolute_advantage", "relative_advantage")
DISCRETION_TYPES = ("binary", "n_slices")
_ADVANTAGE_SUFFIX = re.compile(r", Advantage: (?:negative|positive|-?\d+)$")


def episode_rewards(values: np.ndarray, chunk_size: int, source: str = "progress") -> np.ndarray:
    """Per-frame rewards of one episode (float32), as the reference computes them."""
    if source not in ADVANTAGE_SOURCES:
        raise ValueError(f"unknown advantage source {source!r}")
    values = np.asarray(values)
    if source != "progress":
        return values.astype(np.float32)
    n = len(values)
    rewards = np.empty(n, dtype=np.float32)
    c = int(chunk_size)
    head = max(n - c, 0)  # frames i with i + C < n
    if head:
        rewards[:head] = values[c:] - values[:head]
    if head < n:
        i = np.arange(head, n)
        diff = (values[-1] - values[head:]).astype(np.float64)
        rewards[head:] = diff / (n - i).astype(np.float64) * np.float64(c)
    return rewards


def segment_rewards(
    values: np.ndarray, segment_lengths: np.ndarray, chunk_size: int, source: str = "progress"
) -> np.ndarray:
    """Rewards of several consecutive episodes stored back to back (one parquet file)."""
    if source != "progress":
        return np.asarray(values).astype(np.float32)
    out = np.empty(len(values), dtype=np.float32)
    start = 0
    for n in segment_lengths:
        out[start : start + n] = episode_rewards(values[start : start + n], chunk_size, source)
        start += n
    return out


def frame_stages(stage_progress_gt: np.ndarray, stage_nums: int) -> np.ndarray:
    """Stage index of every frame (int16)."""
    n = len(stage_progress_gt)
    if stage_nums == 1:
        return np.zeros(n, dtype=np.int16)
    spg = np.asarray(stage_progress_gt, dtype=np.float64)
    stage = np.trunc(spg / (1.0 / stage_nums))
    return np.minimum(stage, stage_nums - 1).astype(np.int16)


def percentiles_numpy1(sorted_values: np.ndarray, percents) -> np.ndarray:
    """numpy 1.x ``np.percentile(values, percents)`` (linear method) of already-sorted values.

    The difference of neighbouring order statistics is taken in the values' dtype, the
    interpolation in float64, as numpy 1.22-1.26 do. Returns float64.
    """
    s = np.asarray(sorted_values)
    n = len(s)
    if n == 0:
        raise ValueError("percentile of no values")
    q = np.true_divide(np.asarray(percents, dtype=np.float64), 100)
    virtual = (n - 1) * q
    lo = np.floor(virtual)
    lo_i = lo.astype(np.intp)
    above = virtual >= n - 1
    lo_i = np.where(above, n - 1, lo_i)
    hi_i = np.where(above, n - 1, lo_i + 1)
    gamma = virtual - np.where(above, -1.0, lo)
    a, b = s[lo_i], s[hi_i]
    diff = (b - a).astype(np.float64)  # in the values' dtype first
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = a64 + diff * gamma
    upper = gamma >= 0.5
    out[upper] = b64[upper] - diff[upper] * (1 - gamma[upper])
    return out


@dataclass(frozen=True)
class Cuts:
    """The cut values of one group of frames (a stage, or a task's stage)."""

    values: tuple[float, ...]  # binary: (threshold,); n_slices: N boundaries


def compute_cuts(
    sorted_rewards: np.ndarray, discretion_type: str, threshold: float, n_slices: int
) -> Cuts:
    """Threshold (binary) or N slice boundaries (n_slices) of one group's sorted rewards.

    The rewards keep the dtype the reference would have had: float64 for K = 1, float32 for
    K > 1. An empty group gets the reference's defaults (0.0 / N zeros).
    """
    if len(sorted_rewards) == 0:
        return Cuts((0.0,) if discretion_type == "binary" else (0.0,) * n_slices)
    s = sorted_rewards
    if discretion_type == "binary":
        percents = [100 - threshold]
    else:
        step = 100 / n_slices
        percents = [step * i for i in range(n_slices)]
    return Cuts(tuple(float(v) for v in percentiles_numpy1(s, percents)))


def assign_labels(
    rewards: np.ndarray,
    groups: np.ndarray,
    cuts: dict[int, Cuts],
    discretion_type: str,
    n_slices: int,
    compare_float32: bool,
    top: np.ndarray | None = None,
) -> np.ndarray:
    """Label every frame from its group's cuts (int32).

    Binary: 1 iff r >= t. n_slices: j where b_j <= r < b_(j+1), N-1 where r >= b_(N-1), else 0.
    `compare_float32` makes the comparisons in float32 (the reference's K = 1 path), else
    float64. Frames where `top` is true get the top label (binary 1, n_slices N-1).
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    r = rewards if compare_float32 else rewards.astype(np.float64)
    cast = np.float32 if compare_float32 else np.float64
    labels = np.zeros(len(r), dtype=np.int32)
    for g, cut in cuts.items():
        mask = groups == g
        if not mask.any():
            continue
        rg = r[mask]
        b = [cast(v) for v in cut.values]
        if discretion_type == "binary":
            lab = (rg >= b[0]).astype(np.int32)
        else:
            lab = np.zeros(len(rg), dtype=np.int32)
            # K = 1 (vectorised reference): later slices overwrite earlier ones;
            # K > 1 (per-frame loop with break): the first matching slice wins.
            order = range(len(b) - 1) if compare_float32 else range(len(b) - 2, -1, -1)
            for j in order:
                lab[(rg >= b[j]) & (rg < b[j + 1])] = j
            lab[rg >= b[-1]] = n_slices - 1
        labels[mask] = lab
    if top is not None:
        labels[np.asarray(top, dtype=bool)] = 1 if discretion_type == "binary" else n_slices - 1
    return labels


def reward_statistics(values: np.ndarray, sorted_values: np.ndarray | None = None) -> dict:
    """Mean, std, min, max and percentiles 0..100 (step 10), as the reference prints them.

    `values` in the dataset's frame order (the float32 mean and std depend on it).
    """
    if len(values) == 0:
        return {
            "mean": 0.0,
            "std": 0.0,
            "min": 0.0,
            "max": 0.0,
            "percentiles": {p: 0.0 for p in range(0, 101, 10)},
        }
    percents = list(range(0, 101, 10))
    if sorted_values is None:
        sorted_values = np.sort(values)
    pv = percentiles_numpy1(sorted_values, percents)
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "percentiles": dict(zip(percents, (float(v) for v in pv), strict=True)),
    }


def base_task(text: str) -> str:
    """A task text without the ', Advantage: ...' suffix an earlier labeling added."""
    return _ADVANTAGE_SUFFIX.sub("", text)


def label_names(discretion_type: str, n_slices: int) -> list[str]:
    if discretion_type == "binary":
        return ["negative", "positive"]
    return [str(i) for i in range(n_slices)]


def labeled_task_texts(tasks: list[str], discretion_type: str, n_slices: int) -> list[str]:
    """task_index -> text: (task, label) pairs, tasks in the given order, labels inside."""
    return [
        f"{t}, Advantage: {name}" for t in tasks for name in label_names(discretion_type, n_slices)
    ]
