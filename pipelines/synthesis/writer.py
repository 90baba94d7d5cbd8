"""The dataset writer of rolled-out episodes (`flywheel synth`'s and `flywheel collect`'s).

The episodes' Ray tasks return their tables without the global `index` column: once every
episode's length is known, `write_rollouts` writes the parquet files (v2.1: one Ray task per
group of episodes; v3.0: episodes packed into files, one Ray task per output file) and the
metadata, with each episode's outcome (`episode_success`, what the simulator saw), and the
joints named and given their units (degrees, the gripper range_0_100; `pipelines.dataset.units`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from pipelines.dataset import (
    EPISODE_SUCCESS,
    V30,
    episode_data_path,
    features_of,
    new_info,
    new_info_v30,
    video_feature,
    write_episodes,
    write_meta,
    write_parquet,
)
from pipelines.dataset.units import name_so101_features
from pipelines.simulator.tasks import CAMERAS
from pipelines.synthesis.config import DatasetLayout


def with_index(table: pa.Table, first: int) -> pa.Table:
    """The episode's table with its global `index` column (after `episode_index`)."""
    index = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
    return table.add_column(table.column_names.index("episode_index") + 1, "index", index)


def write_tables(root: str, items: list[tuple[int, int]], tables: list[pa.Table]) -> int:
    """Ray task body: write v2.1 episode tables with their global `index`."""
    for (episode, first), table in zip(items, tables, strict=True):
        write_parquet(episode_data_path(root, episode), with_index(table, first))
    return len(items)


def write_rollouts(
    root: Path, cfg: DatasetLayout, groups: list, refs: list, metas: list[dict]
) -> int:
    """Write the rolled-out episodes' parquet files and metadata; returns the frame count.

    `refs[g]` are the (metas, tables) object refs of the Ray task that rolled out the
    episodes of `groups[g]`; `metas` their metadata in episode order (with `length`, `stats`,
    `videos` and `success`). `cfg` gives format, fps, image_size, vcodec and text (also `flywheel
    collect`'s writer). Each episode's outcome, `episode_success`, is its meta's
    `episode_success` where the rollout gives one (None: unknown, as on a real arm, where
    nothing declares success), else its `success`.
    """
    outcomes = [m.get(EPISODE_SUCCESS, m["success"]) for m in metas]
    firsts = np.r_[0, np.cumsum([m["length"] for m in metas])[:-1]].tolist()
    size = cfg.image_size
    total = int(sum(m["length"] for m in metas))
    vfeatures = {k: video_feature(size, size, cfg.fps, cfg.vcodec) for k in CAMERAS}
    if cfg.format == V30:
        tables = [t for group in ray.get([r[1] for r in refs]) for t in group]
        tables = [with_index(t, int(first)) for t, first in zip(tables, firsts, strict=True)]
        info = new_info_v30(
            fps=cfg.fps,
            features=name_so101_features(features_of(tables[0], vfeatures)),
            total_episodes=0,
            total_frames=0,
            total_tasks=0,
            robot_type="so101_follower",
        )
        write_episodes(
            root,
            tables=tables,
            videos={k: [Path(m["videos"][k]) for m in metas] for k in CAMERAS},
            stats=[m["stats"] for m in metas],
            tasks={0: cfg.text},
            episode_tasks=[[cfg.text]] * len(metas),
            info=info,
            map_files=_ray_map,
            outcomes=outcomes,
        )
    else:
        writer = ray.remote(num_cpus=1)(write_tables)
        ray.get(
            [
                writer.remote(str(root), [(int(i), int(firsts[i])) for i in g], tables_ref)
                for g, (_, tables_ref) in zip(groups, refs, strict=True)
            ]
        )
        schema = pq.read_schema(episode_data_path(root, 0))
        features = name_so101_features(features_of(schema.empty_table(), vfeatures))
        info = new_info(
            fps=cfg.fps,
            features=features,
            total_episodes=len(metas),
            total_frames=total,
            total_tasks=1,
            robot_type="so101_follower",
        )
        write_meta(
            root,
            info=info,
            tasks={0: cfg.text},
            episodes=[
                {
                    "episode_index": m["episode_index"],
                    "tasks": [cfg.text],
                    "length": m["length"],
                    **({} if outcome is None else {EPISODE_SUCCESS: bool(outcome)}),
                }
                for m, outcome in zip(metas, outcomes, strict=True)
            ],
            episodes_stats={m["episode_index"]: m["stats"] for m in metas},
        )
    return total


def _ray_map(fn, jobs: list) -> list:
    """`map` over Ray tasks, one per job (the v3.0 writer's per-file writes)."""
    task = ray.remote(num_cpus=1)(fn)
    return ray.get([task.remote(job) for job in jobs])
