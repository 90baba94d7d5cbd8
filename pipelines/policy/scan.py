"""Checking a policy's training data before Ray starts: one pass over the needed columns of
every episode file (no pixels), and the normalization statistics from the training episodes.

One-line DatasetErrors name the file (and episode and frame) of what the recipe cannot use:
labels when conditioning on prompts, the advantage column for `awr`, rewards for `iql`, the
logged propensities for importance weights or the curriculum, the data types, NaNs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.dataset import DatasetError, LeRobotDataset, parquet_column_names, read_columns
from pipelines.policy.config import PolicyTrainConfig
from pipelines.policy.data import (
    DATA_TYPES,
    PromptTable,
    label_of,
    normalization_stats,
    vectors,
)
from pipelines.selection.propensity import LOG_NAME, dataset_log, validate_propensities

SELECTION_COLUMNS = ("action_propensity", "candidate_actions", "selected_candidate")


def _float_column(table, name: str, rel: str) -> np.ndarray:
    typ = table.schema.field(name).type
    while pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ):
        typ = typ.value_type
    if not pa.types.is_floating(typ):
        raise DatasetError(f"{rel}: column {name!r} is {typ}, not a float column")
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        if len(col.flatten()) != table.num_rows:
            raise DatasetError(f"{rel}: column {name!r} is not one value per frame")
        col = col.flatten()
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _where_nan(values: np.ndarray, episodes: np.ndarray, frames: np.ndarray) -> str | None:
    bad = np.flatnonzero(~np.isfinite(values))
    if not len(bad):
        return None
    i = bad[0]
    return f"episode {int(episodes[i])} frame {int(frames[i])}"


@dataclass
class DatasetScan:
    cameras: list[str]
    state_dim: int
    action_dim: int
    stats: dict
    prompts: PromptTable
    frames: int
    top_frames: int
    data_types: dict[str, int]


def scan_dataset(
    ds: LeRobotDataset, episodes: list[int], cfg: PolicyTrainConfig, action_frame: str
) -> DatasetScan:
    """Validate every training episode's columns (no pixels); the normalization statistics.

    One-line DatasetErrors name the file (and episode and frame) of what the recipe cannot use.
    """
    cameras = ds.camera_keys
    root = ds.root
    if not cameras:
        raise DatasetError(f"{root}/meta/info.json: no camera features")
    for key in ("observation.state", "action"):
        if key not in ds.features:
            raise DatasetError(f"{root}/meta/info.json: no {key!r} feature")
    if not ds.tasks:
        raise DatasetError(f"{root}/meta: no tasks (tasks.jsonl / tasks.parquet)")
    prompts = PromptTable.from_tasks(ds.tasks)
    labeled = [t for t in ds.tasks.values() if label_of(t) is not None]
    needs_labels = cfg.learner.conditioning == "prompt" or cfg.sampling.drop_negative
    if needs_labels and not labeled:
        flag = (
            "--conditioning prompt" if cfg.learner.conditioning == "prompt" else "--drop-negative"
        )
        raise DatasetError(
            f"{root}/meta: {flag} needs advantage labels, but no task text carries one "
            f"(e.g. {next(iter(ds.tasks.values()))!r}); label the dataset first "
            "(flywheel label), or train plain BC with --conditioning none"
        )
    columns = ["observation.state", "action", "task_index", "episode_index", "frame_index"]
    optional = ["data_type"]
    if cfg.learner.weighting == "awr":
        columns.append(cfg.advantage_column)
    if cfg.learner.weighting == "iql":
        columns += ["next.reward", "next.done"]
    selection = cfg.learner.importance_weights or cfg.sampling.curriculum == "propensity"
    if selection:
        columns += [*SELECTION_COLUMNS, "approval_status"]
        log = None
        if (root / LOG_NAME).exists():
            log = dataset_log(root)
    files: dict[Path, list[int]] = {}
    for e in episodes:
        files.setdefault(ds.data_file(e, cfg.data_dir), []).append(e)
    states, actions = [], []
    counts = dict.fromkeys(DATA_TYPES, 0)
    frames = top = 0
    wanted = set(episodes)
    for path, eps in files.items():
        rel = ds.relative(path)
        if not path.exists():
            raise DatasetError(f"{rel}: missing (episode {eps[0]})")
        names = parquet_column_names(path)
        for col in columns:
            if col not in names and col in (*SELECTION_COLUMNS, "approval_status"):
                flag = "--importance-weights" if cfg.learner.importance_weights else "--curriculum"
                raise DatasetError(
                    f"{rel}: no column {col!r}: {flag} needs a dataset collected with logged "
                    "propensities (flywheel collect)"
                )
            if col not in names:
                what = "advantage column" if col == cfg.advantage_column else "column"
                hint = (
                    f"; float columns there: {', '.join(_float_names(path)) or 'none'}"
                    if col == cfg.advantage_column
                    else ""
                )
                raise DatasetError(f"{rel}: no {what} {col!r}{hint}")
        table = read_columns(path, columns + [c for c in optional if c in names])
        ep_col = table.column("episode_index").to_numpy()
        fr_col = table.column("frame_index").to_numpy()
        if cfg.learner.weighting == "awr":
            values = _float_column(table, cfg.advantage_column, rel)
            where = _where_nan(values, ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite {cfg.advantage_column!r} at {where}")
        if cfg.learner.weighting == "iql":
            values = _float_column(table, "next.reward", rel)
            where = _where_nan(values, ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite 'next.reward' at {where}")
        if selection:
            validate_propensities(
                rel,
                _float_column(table, "action_propensity", rel),
                fr_col,
                ep_col,
                _candidate_count(table, rel),
                table.column("selected_candidate").to_numpy(),
                log,
            )
        ti = table.column("task_index").to_numpy()
        unknown = sorted(set(ti.tolist()) - set(ds.tasks))
        if unknown:
            raise DatasetError(f"{rel}: task_index {unknown[0]} is not in the dataset's tasks")
        if "data_type" in table.column_names:
            for value, n in zip(
                *np.unique(np.asarray(table.column("data_type").to_pylist(), dtype=object), True),
                strict=True,
            ):
                if value not in counts:
                    raise DatasetError(
                        f"{rel}: data_type {value!r} is not one of {', '.join(DATA_TYPES)}"
                    )
                counts[value] += int(n)
        else:
            counts["auto"] += table.num_rows
        state = vectors(table, "observation.state")
        action = vectors(table, "action")
        for name, values in (("observation.state", state), ("action", action)):
            where = _where_nan(values.sum(1), ep_col, fr_col)
            if where:
                raise DatasetError(f"{rel}: NaN or infinite {name!r} at {where}")
        for e in sorted(set(ep_col.tolist()) & wanted):
            mask = ep_col == e
            states.append(state[mask])
            actions.append(action[mask])
        keep = np.isin(ep_col, list(wanted))
        frames += int(keep.sum())
        top += int((prompts.top[ti] & keep).sum())
    if cfg.sampling.drop_negative and top == 0:
        raise DatasetError(f"{root}: --drop-negative keeps no frame (no top-label frames)")
    state_dim, action_dim = states[0].shape[1], actions[0].shape[1]
    stats = normalization_stats(states, actions, cfg.network.chunk_size, action_frame)
    return DatasetScan(cameras, state_dim, action_dim, stats, prompts, frames, top, counts)


def _candidate_count(table, rel: str) -> int:
    """n of an n x action_dim `candidate_actions` column."""
    typ = table.schema.field("candidate_actions").type
    if not (pa.types.is_fixed_size_list(typ) and pa.types.is_fixed_size_list(typ.value_type)):
        raise DatasetError(f"{rel}: column 'candidate_actions' is {typ}, not n x action_dim")
    return typ.list_size


def _float_names(path: Path) -> list[str]:
    return [f.name for f in pq.read_schema(path) if pa.types.is_floating(f.type)]
