"""The dataset's tasks before the labeling, and its relabeled metadata after it.

`resolve_tasks`: the base task texts and each episode's task. `episode_labels`: each episode's
labeled task texts and the exact stats of its new task_index (from label histograms).
`stage_metadata`: the relabeled metadata written as temporaries for the two-phase commit.
"""

from __future__ import annotations

import json

import numpy as np

from pipelines.dataset import (
    QUANTILES,
    V30,
    DatasetError,
    LeRobotDataset,
    aggregate_stats,
    episode_rows,
    flatten_stats,
    stage_episode_stats,
    stage_meta,
    stage_meta_v30,
)
from pipelines.labeling import advantage
from pipelines.labeling.config import LabelConfig


def resolve_tasks(ds: LeRobotDataset, cfg: LabelConfig) -> tuple[list[str], dict[int, int] | None]:
    """Base task texts (in task_index order) and each episode's task position.

    Texts come from `--task`, else the dataset's tasks without an earlier ', Advantage: ...'
    suffix. With several tasks, each episode keeps its own text, read from
    the episode metadata (meta/episodes.jsonl, or v3.0's meta/episodes/).
    """
    if cfg.task is not None:
        return [cfg.task.strip()], None
    if not ds.tasks:
        raise DatasetError(f"{ds.root}/meta/tasks.jsonl: no tasks listed; pass --task TEXT")
    bases = list(dict.fromkeys(advantage.base_task(t) for _, t in sorted(ds.tasks.items())))
    if len(bases) == 1:
        return bases, None
    if not ds.episodes:
        raise DatasetError(
            f"{ds.root}/meta: no episode metadata, but the dataset has {len(bases)} tasks "
            "and each episode keeps its own; pass --task TEXT to use one text"
        )
    episode_task: dict[int, int] = {}
    for ep, row in ds.episodes.items():
        texts = list(dict.fromkeys(advantage.base_task(t) for t in row.get("tasks") or []))
        if len(texts) != 1:
            raise DatasetError(
                f"{ds.root}/meta: episode {ep} lists "
                f"{len(texts) or 'no'} task(s) {texts}; pass --task TEXT"
            )
        if texts[0] not in bases:
            bases.append(texts[0])
        episode_task[ep] = bases.index(texts[0])
    return bases, episode_task


def episode_labels(
    seg_episodes: np.ndarray, seg_lengths: np.ndarray, task_index: np.ndarray, texts: list[str]
) -> tuple[dict[int, list[str]], dict[int, dict]]:
    """Each episode's labeled task texts and the stats of its new task_index.

    Works from each segment's (a file's run of one episode) histogram of labels, merged per
    episode: labels are a few small integers, so nothing of the size of the dataset is
    allocated again, and the stats (quantiles included) are exact.
    """
    keep = seg_lengths > 0
    seg_episodes, seg_lengths = seg_episodes[keep], seg_lengths[keep]
    starts = np.r_[0, np.cumsum(seg_lengths)[:-1]].astype(np.int64)
    n_labels = len(texts)
    hist: dict[int, np.ndarray] = {}
    for e, a, n in zip(seg_episodes.tolist(), starts, seg_lengths, strict=True):
        counts = np.bincount(task_index[a : a + n], minlength=n_labels)
        hist[e] = hist[e] + counts if e in hist else counts
    tasks, stats = {}, {}
    for e, counts in hist.items():
        tasks[e] = [texts[i] for i in np.flatnonzero(counts)]
        stats[e] = histogram_stats(counts)
    return tasks, stats


def histogram_stats(counts: np.ndarray) -> dict:
    """LeRobot's stats of integer values 0..len(counts)-1 given how often each occurs.

    Equal to `pipelines.dataset.numeric_stats` of the values themselves (numpy's linear
    quantiles), without materializing them.
    """
    values = np.arange(len(counts), dtype=np.float64)
    n = int(counts.sum())
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / n)
    present = np.flatnonzero(counts)
    cum = np.cumsum(counts)

    def at(k: int) -> float:  # the k-th smallest value (0-based)
        return float(np.searchsorted(cum, k, side="right"))

    out = {
        "min": [float(present[0])],
        "max": [float(present[-1])],
        "mean": [mean],
        "std": [float(np.sqrt(max(var, 0.0)))],
        "count": [n],
    }
    for name, q in QUANTILES.items():
        h = (n - 1) * q
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        out[name] = [at(lo) + (h - lo) * (at(hi) - at(lo))]
    return out


def stage_metadata(ds: LeRobotDataset, texts: list[str], episode_tasks, task_stats) -> list:
    """The relabeled metadata, staged: (temporary, target) pairs, info.json last."""
    info = {**ds.info, "total_tasks": len(texts)}
    tasks = dict(enumerate(texts))
    if ds.version == V30:
        rows = episode_rows(ds)
        for row in rows:
            e = row["episode_index"]
            if e in episode_tasks:
                row["tasks"] = episode_tasks[e]
                row.update(flatten_stats({"task_index": task_stats[e]}))
        stats_path = ds.meta_dir / "stats.json"
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        stats["task_index"] = aggregate_stats({"task_index": s} for s in task_stats.values())[
            "task_index"
        ]
        return stage_meta_v30(ds.root, info=info, tasks=tasks, rows=rows, stats=stats)
    rows = {e: dict(row) for e, row in ds.episodes.items()}
    for e, labeled in episode_tasks.items():
        n = task_stats[e]["count"][0]
        rows.setdefault(e, {"episode_index": e, "length": n})["tasks"] = labeled
    staged = []
    episode_stats = stage_episode_stats(ds.root, "task_index", task_stats)
    if episode_stats is not None:
        staged.append(episode_stats)
    return staged + stage_meta(ds.root, info=info, tasks=tasks, episodes=list(rows.values()))
