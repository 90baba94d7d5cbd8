"""Episode outcomes: the per-episode success flag `episode_success` (Evo-RL's field name).

It lives in the episodes metadata, beside what LeRobot writes there: a key of each line of
v2.1 `meta/episodes.jsonl`, a boolean column of v3.0's `meta/episodes/` parquet files (null
where an episode has no outcome). An episode without it has no outcome (None).

`stage_episode_outcomes` stages the episodes metadata with the flags changed and everything
else left as it was (every other key, line and column, and LeRobot's own files untouched:
info.json, stats, tasks, data and videos), for `commit_staged` under the writer lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from pipelines.dataset import metadata
from pipelines.dataset.atomic import stage_jsonl
from pipelines.dataset.errors import DatasetError
from pipelines.dataset.layout import V21, LeRobotDataset
from pipelines.dataset.tables import read_columns, write_parquet_temp

EPISODE_SUCCESS = SUCCESS = metadata.EPISODE_SUCCESS


def stage_episode_outcomes(
    ds: LeRobotDataset, outcomes: Mapping[int, bool | None]
) -> list[tuple[Path, Path]]:
    """Stage the episodes metadata of `ds` with `episode_success` set for the episodes in
    `outcomes` (None removes an episode's outcome); other episodes keep theirs. Returns
    (temporary, target) pairs for `commit_staged`."""
    unknown = sorted(set(outcomes) - set(ds.episodes))
    if unknown:
        raise DatasetError(f"{ds.root}/meta: episode {unknown[0]} is not listed")
    for ep, value in outcomes.items():
        metadata.check_outcome(f"{ds.root}/meta: episode {ep}", value)
    if ds.version == V21:
        return [_stage_v21(ds.meta_dir / "episodes.jsonl", outcomes)]
    return [_stage_v30(path, outcomes) for path in _v30_files(ds.root)]


def _stage_v21(path: Path, outcomes: Mapping[int, bool | None]) -> tuple[Path, Path]:
    rows = metadata.read_jsonl(path)  # in file order, every key kept in its place
    for n, row in enumerate(rows, 1):
        ep = metadata.check_episode(f"{path}:{n}", row)
        if ep in outcomes:
            if outcomes[ep] is None:
                row.pop(SUCCESS, None)
            else:
                row[SUCCESS] = bool(outcomes[ep])
    return stage_jsonl(path, rows), path


def _stage_v30(path: Path, outcomes: Mapping[int, bool | None]) -> tuple[Path, Path]:
    table = read_columns(path)
    episodes = table.column("episode_index").to_pylist()
    old = table.column(SUCCESS).to_pylist() if SUCCESS in table.column_names else None
    values = [
        outcomes[ep] if ep in outcomes else (old[i] if old is not None else None)
        for i, ep in enumerate(episodes)
    ]
    column = pa.array(values, pa.bool_())
    if old is not None:
        table = table.set_column(table.column_names.index(SUCCESS), SUCCESS, column)
    else:
        table = table.append_column(pa.field(SUCCESS, pa.bool_()), column)
    return write_parquet_temp(path, table), path


def _v30_files(root: str | os.PathLike) -> list[Path]:
    return sorted((Path(root) / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
