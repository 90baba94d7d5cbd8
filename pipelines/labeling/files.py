"""The per-file work of a labeling, as Ray task bodies over groups of data files.

Pass 1, `scan_files`: each file's label inputs, validated (`frame_values`), one row per file.
Pass 2, `stage_files`: each file rewritten with its new task_index as a fsynced temporary
beside it. `map_files` fans either out, one Ray task per group of files, and gathers the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipelines.dataset import DatasetError, column_to_numpy, read_columns, write_parquet_temp
from pipelines.labeling import advantage


@dataclass(frozen=True)
class FramePlan:
    """Which columns decide the labels and how; shipped to every Ray task."""

    source: str
    chunk_size: int
    stage_nums: int
    top_column: str | None  # intervention flag column, with --intervention-positive

    @property
    def columns(self) -> list[str]:
        cols = [self.source]
        if self.stage_nums > 1:
            cols.append("stage_progress_gt")
        if self.top_column:
            cols.append(self.top_column)
        return cols


@dataclass
class FrameValues:
    episodes: np.ndarray  # episode index of each contiguous segment of the file
    lengths: np.ndarray  # frames in each segment
    rewards: np.ndarray  # float32 per frame
    stages: np.ndarray  # int16 per frame
    top: np.ndarray | None  # bool per frame (frames recorded under intervention)
    current: np.ndarray | None = None  # the file's task_index now (None: absent or not int64)


def _file_episode(path: str) -> int:
    stem = Path(path).stem
    digits = stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else -1


def frame_values(table: pa.Table, plan: FramePlan, path: str, rel: str) -> FrameValues:
    """Validate one file's label inputs and compute rewards, stages and flags.

    Raises DatasetError naming the file (and episode/frame) for anything the labels cannot be
    computed from.
    """
    names = table.column_names
    n = table.num_rows
    if "episode_index" in names:
        ep_col = column_to_numpy(table, "episode_index").astype(np.int64)
        if n:
            starts = np.flatnonzero(np.r_[True, ep_col[1:] != ep_col[:-1]])
            episodes = ep_col[starts]
            lengths = np.diff(np.r_[starts, n])
        else:
            episodes = lengths = np.zeros(0, dtype=np.int64)
    else:
        episodes = np.array([_file_episode(path)] if n else [], dtype=np.int64)
        lengths = np.array([n] if n else [], dtype=np.int64)

    def where(i: int) -> str:
        seg = int(np.searchsorted(np.cumsum(lengths), i, side="right"))
        start = int(lengths[:seg].sum())
        return f"{rel}: episode {int(episodes[seg])} frame {i - start}"

    try:
        values = column_to_numpy(table, plan.source)
    except DatasetError as e:
        raise DatasetError(f"{rel}: {e}") from None
    if values.dtype.kind not in "fiu":
        raise DatasetError(f"{rel}: column {plan.source!r} is {values.dtype}, not numeric")
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DatasetError(f"{where(int(bad[0]))}: {plan.source} is {values[bad[0]]}")
    rewards = advantage.segment_rewards(values, lengths, plan.chunk_size, plan.source)

    if plan.stage_nums > 1:
        try:
            spg = column_to_numpy(table, "stage_progress_gt").astype(np.float64)
        except DatasetError as e:
            raise DatasetError(f"{rel}: {e}") from None
        bad = np.flatnonzero(~((spg >= 0) & (spg <= 1)))  # NaN fails both
        if len(bad):
            raise DatasetError(
                f"{where(int(bad[0]))}: stage_progress_gt={spg[bad[0]]} is outside [0, 1] "
                f"(required with --stage-nums {plan.stage_nums})"
            )
        stages = advantage.frame_stages(spg, plan.stage_nums)
    else:
        stages = np.zeros(n, dtype=np.int16)

    top = None
    if plan.top_column == "data_type":
        top = np.asarray(table.column("data_type").to_pylist(), dtype=object) == "intervention"
    elif plan.top_column:
        flags = column_to_numpy(table, plan.top_column)
        if flags.dtype.kind == "f" and np.isnan(flags).any():
            i = int(np.flatnonzero(np.isnan(flags))[0])
            raise DatasetError(f"{where(i)}: {plan.top_column} is missing")
        top = flags.astype(bool)
    current = None  # compared as int32: labels are small; anything larger is rewritten
    if "task_index" in names and table.schema.field("task_index").type == pa.int64():
        ti = column_to_numpy(table, "task_index")
        current = np.where((ti >= 0) & (ti < 2**31), ti, -1).astype(np.int32)
    return FrameValues(episodes, lengths, rewards, stages, top, current)


_NO_FRAMES = FrameValues(
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.float32),
    np.zeros(0, np.int16),
    None,
)


def _lists(arrays: list[np.ndarray], typ: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=typ))


def scan_files(batch: pa.Table, plan: FramePlan, root: str) -> pa.Table:
    """Ray Data UDF of pass 1: one output row per input file (values, or the error)."""
    files, errors = [], []
    out = {k: [] for k in ("episodes", "lengths", "rewards", "stages", "top", "current")}
    for file_id, path in zip(batch["file"].to_pylist(), batch["path"].to_pylist(), strict=True):
        rel = relative_path(path, root)
        try:
            table = read_columns(path, plan.columns, optional=["episode_index", "task_index"])
            fv = frame_values(table, plan, path, rel)
            errors.append(None)
        except DatasetError as e:
            errors.append(str(e).replace(str(path), rel))
            fv = _NO_FRAMES
        files.append(file_id)
        out["episodes"].append(fv.episodes)
        out["lengths"].append(fv.lengths)
        out["rewards"].append(fv.rewards)
        out["stages"].append(fv.stages)
        n = len(fv.rewards)
        out["top"].append(fv.top if fv.top is not None else np.zeros(n, dtype=bool))
        out["current"].append(fv.current if fv.current is not None else np.full(n, -1, np.int32))
    return pa.table(
        {
            "file": pa.array(files, type=pa.int64()),
            "error": pa.array(errors, type=pa.string()),
            "episodes": _lists(out["episodes"], pa.int64()),
            "lengths": _lists(out["lengths"], pa.int64()),
            "rewards": _lists(out["rewards"], pa.float32()),
            "stages": _lists(out["stages"], pa.int16()),
            "top": _lists(out["top"], pa.bool_()),
            "current": _lists(out["current"], pa.int32()),
        }
    )


def stage_files(batch: pa.Table, root: str) -> pa.Table:
    """Ray task of the staging pass: each file with its new task_index, as a temporary.

    Reads the whole file, so a corruption in any column shows up here, before anything of the
    dataset changes. Returns one row per file: the temporary's path, or the error.
    """
    files, temps, errors = [], [], []
    for file_id, path, labels in zip(
        batch["file"].to_pylist(),
        batch["path"].to_pylist(),
        batch["task_index"].to_pylist(),
        strict=True,
    ):
        rel = relative_path(path, root)
        tmp = None
        try:
            table = read_columns(path)
            ti = pa.array(np.frombuffer(labels, dtype=np.int32).astype(np.int64))
            if len(ti) != table.num_rows:
                raise DatasetError(f"{rel}: changed while labeling ({table.num_rows} frames now)")
            if "task_index" in table.column_names:
                table = table.set_column(table.column_names.index("task_index"), "task_index", ti)
            else:
                table = table.append_column("task_index", ti)
            tmp = str(write_parquet_temp(path, table))
            errors.append(None)
        except DatasetError as e:
            errors.append(str(e).replace(str(path), rel))
        except OSError as e:
            errors.append(f"{rel}: cannot write ({e.strerror or e})")
        files.append(file_id)
        temps.append(tmp)
    return pa.table(
        {
            "file": pa.array(files, pa.int64()),
            "temp": pa.array(temps, pa.string()),
            "error": pa.array(errors, pa.string()),
        }
    )


def relative_path(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def map_files(items: list[dict], fn, n_groups: int, **kwargs) -> pa.Table:
    """Run `fn` over groups of files, one Ray task per group, and gather its rows by file.

    `fn` takes a table with one row per file (its `file` id, `path`, ...) and returns one row
    per file. Tasks, not a Ray Data Dataset: each pass is a plain fan-out of pyarrow reads or
    rewrites plus a gather, and on a 2-core machine Ray Data's first use (its helper actors,
    its import in every worker) measured 3-5 s on top of the same work.
    """
    task = ray.remote(num_cpus=1)(fn)
    table = pa.Table.from_pylist(items)
    groups = [g for g in np.array_split(np.arange(len(items)), n_groups) if len(g)]
    refs = [task.remote(table.slice(int(g[0]), len(g)), **kwargs) for g in groups]
    return pa.concat_tables(ray.get(refs)).sort_by("file")


def first_error(result: pa.Table) -> str | None:
    errs = result.filter(pc.is_valid(result["error"]))
    if errs.num_rows == 0:
        return None
    msg = errs["error"][0].as_py()
    if errs.num_rows > 1:
        msg += f" (and {errs.num_rows - 1} more file(s) with errors)"
    return msg


def flat_column(result: pa.Table, name: str) -> np.ndarray:
    return pc.list_flatten(result[name]).to_numpy(zero_copy_only=False)
