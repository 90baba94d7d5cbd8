"""A small generator of progress-only LeRobot datasets, v2.1 or v3.0 (no cameras).

Used by the tests and the labeling benchmark, where what matters is the table layout and a
progress signal with good and bad moments, not images. Episodes mix steady progress,
hesitations (flat stretches), set-backs (progress drops) and failures (never finishing).
`flywheel synth` makes real episodes with cameras from the simulator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipelines.dataset import (
    V21,
    V30,
    episode_data_path,
    features_of,
    frames_table,
    new_info,
    new_info_v30,
    table_stats,
    write_episodes,
    write_meta,
    write_parquet,
)


def progress_curve(rng: np.random.Generator, n: int) -> tuple[np.ndarray, bool]:
    """A progress curve in [0, 1] over n frames and whether the episode succeeds."""
    kind = rng.choice(["steady", "hesitant", "setback", "failing"], p=[0.4, 0.3, 0.2, 0.1])
    speed = rng.uniform(0.6, 1.4, size=n)
    if kind == "hesitant":
        for _ in range(rng.integers(1, 4)):
            s = rng.integers(0, max(n - 1, 1))
            speed[s : s + rng.integers(n // 10 + 1, n // 4 + 2)] = 0.0
    if kind == "setback":
        s = rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4))
        speed[s : s + n // 8 + 1] = -1.5
    inc = speed / max(speed.clip(min=0).sum(), 1e-9)
    progress = np.clip(np.cumsum(inc), 0.0, 1.0)
    success = kind != "failing"
    if not success:
        progress = progress * rng.uniform(0.3, 0.8)
    progress = np.clip(progress + rng.normal(0, 0.003, size=n), 0.0, 1.0)
    if n:
        progress[0] = 0.0
    return progress, success


def random_stage_progress(n: int, stage_nums: int, rng: np.random.Generator) -> np.ndarray:
    """Seed 004's stage progress: k/K + (1/K) * (position in stage / stage length)."""
    if n == 0:
        return np.zeros(0)
    cuts = (
        np.sort(
            rng.choice(
                np.arange(1, max(n, 2)), size=min(stage_nums - 1, max(n - 1, 0)), replace=False
            )
        )
        if stage_nums > 1
        else np.array([], dtype=int)
    )
    bounds = np.r_[0, cuts, n]
    spg = np.empty(n)
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        spg[a:b] = k / stage_nums + (1 / stage_nums) * (np.arange(b - a) / max(b - a, 1))
    return spg


def make_progress_dataset(
    root: str | os.PathLike,
    *,
    episodes: int = 20,
    seed: int = 0,
    min_length: int = 40,
    max_length: int = 120,
    state_dim: int = 6,
    stage_nums: int = 2,
    fps: int = 30,
    task: str = "pick up the red cube",
    progress_dtype: str = "float32",
    intervention_rate: float = 0.0,
    version: str = V21,
    data_files_size_in_mb: float = 100,
) -> Path:
    """Write a dataset of `episodes` progress-only episodes under `root`; returns root.

    `version` v3.0 packs the episodes into multi-episode files of `data_files_size_in_mb`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    episode_rows, stats, total, features, tables = [], {}, 0, None, []
    for ep in range(episodes):
        n = int(rng.integers(min_length, max_length + 1))
        progress, success = progress_curve(rng, n)
        state = np.cumsum(rng.normal(0, 0.05, size=(n, state_dim)), axis=0).astype(np.float32)
        action = np.vstack([state[1:], state[-1:]]) if n else state
        interv = np.zeros(n, dtype=bool)
        if intervention_rate > 0 and n > 4:
            length = max(1, int(n * intervention_rate))
            start = int(rng.integers(0, n - length))
            interv[start : start + length] = True
        reward = np.zeros(n, dtype=np.float32)
        done = np.zeros(n, dtype=bool)
        if n:
            done[-1] = True
            reward[-1] = 1.0 if success else 0.0
        table = frames_table(
            {
                "observation.state": state,
                "action": action,
                "timestamp": np.arange(n, dtype=np.float32) / fps,
                "frame_index": np.arange(n),
                "episode_index": np.full(n, ep),
                "index": np.arange(total, total + n),
                "task_index": np.zeros(n, dtype=np.int64),
                "progress": progress.astype(progress_dtype),
                "stage_progress_gt": random_stage_progress(n, stage_nums, rng).astype(np.float32),
                "progress_gt": np.maximum.accumulate(progress).astype(np.float32),
                "next.reward": reward,
                "next.done": done,
                "complementary_info.is_intervention": interv,
                "data_type": np.where(interv, "intervention", "demo"),
            },
            {"progress": {"dtype": progress_dtype, "shape": [1], "names": None}},
        )
        if version == V30:
            tables.append(table)
        else:
            write_parquet(episode_data_path(root, ep), table)
        features = features or features_of(table)
        episode_rows.append({"episode_index": ep, "tasks": [task], "length": n})
        stats[ep] = table_stats(table)
        total += n
    if version == V30:
        info = new_info_v30(
            fps=fps,
            features=features or {},
            total_episodes=0,
            total_frames=0,
            total_tasks=0,
            robot_type="so101_follower",
            data_files_size_in_mb=data_files_size_in_mb,
        )
        write_episodes(
            root,
            tables=tables,
            videos={},
            stats=[stats[e] for e in range(episodes)],
            tasks={0: task},
            episode_tasks=[[task]] * episodes,
            info=info,
        )
        return root
    info = new_info(
        fps=fps,
        features=features or {},
        total_episodes=episodes,
        total_frames=total,
        total_tasks=1,
        robot_type="so101_follower",
    )
    write_meta(root, info=info, tasks={0: task}, episodes=episode_rows, episodes_stats=stats)
    return root
