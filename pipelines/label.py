"""`flywheel label DATASET`: Stage-0 GT labeling, in place, distributed over Ray.

LeRobot v2.1 (one file per episode) and v3.0 (multi-episode files) alike.

Pass 1 (scan) reads only the columns the labels depend on, one Ray task per group of data
files, validates them and returns each frame's reward, stage and intervention flag. The driver
computes the exact per-stage percentiles (every reward of a stage must be in one place: the
driver peaks at about 42 bytes per frame, 100 MB for 2.4 M frames) and prints the reference's
report. Nothing is written until every file has been read and validated.

Pass 2 is a two-phase commit. Staging: one task per group of files reads each whole file whose
task_index changes (every column: a corruption anywhere shows up here, not halfway through the
relabeling) and writes the relabeled file as a fsynced temporary beside it; the driver stages
the metadata likewise (v2.1: episodes_stats.jsonl, tasks.jsonl, episodes.jsonl, info.json;
v3.0: meta/episodes/*, stats.json, tasks.parquet, info.json). Any failure before the commit
removes the temporaries and leaves the dataset byte-identical (exit 2, naming the file).
Commit: only when everything is staged, `commit_staged` journals the renames and puts every
file in place; a run killed during the commit is finished by the next run before it does
anything else. Staging needs temporary disk space the size of every data file whose labels
change (all of them on a first labeling) plus the metadata, freed at the commit.

The labels depend only on columns the job never changes, so a run killed at any point and
started again with the same command ends with exactly the dataset an uninterrupted run gives.

Also `python -m pipelines.label` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.dataset import (
    JOURNAL,
    V30,
    DatasetError,
    LeRobotDataset,
    aggregate_stats,
    column_to_numpy,
    commit_staged,
    episode_rows,
    finish_interrupted_commit,
    flatten_stats,
    parquet_column_names,
    read_columns,
    remove_stale_temps,
    stage_episode_stats,
    stage_meta,
    stage_meta_v30,
    write_parquet_temp,
)
from pipelines.labeling import advantage
from pipelines.runtime.cli import JobParser
from pipelines.runtime.cluster import ClusterError, check_job_output
from pipelines.runtime.tracking import TrackingError, check_tracking_uri

INTERVENTION_COLUMN = "complementary_info.is_intervention"


@dataclass
class LabelConfig:
    dataset: str
    threshold: float = 70.0
    chunk_size: int = 50
    discretion_type: str = "binary"
    n_slices: int = 10
    advantage_source: str = "progress"
    stage_nums: int = 1
    dry_run: bool = False
    task: str | None = None
    data_dir: str = "data"
    intervention_positive: bool = False
    per_task_threshold: bool = False
    ray_address: str | None = None
    mlflow: bool = True

    @property
    def n_labels(self) -> int:
        return 2 if self.discretion_type == "binary" else self.n_slices

    def validate(self) -> None:
        if not 0 <= self.threshold <= 100:
            raise DatasetError(f"--threshold {self.threshold}: must be between 0 and 100")
        if self.chunk_size < 1:
            raise DatasetError(f"--chunk-size {self.chunk_size}: must be at least 1")
        if self.n_slices < 1:
            raise DatasetError(f"--n-slices {self.n_slices}: must be at least 1")
        if self.stage_nums < 1:
            raise DatasetError(f"--stage-nums {self.stage_nums}: must be at least 1")
        if self.discretion_type not in advantage.DISCRETION_TYPES:
            raise DatasetError(f"--discretion-type {self.discretion_type!r}: binary or n_slices")
        if self.advantage_source not in advantage.ADVANTAGE_SOURCES:
            raise DatasetError(f"--advantage-source {self.advantage_source!r}: unknown source")
        if self.task is not None and not self.task.strip():
            raise DatasetError("--task: empty task text")
        if not self.data_dir or "/" in self.data_dir or self.data_dir in (".", ".."):
            raise DatasetError(f"--data-dir {self.data_dir!r}: a folder name inside the dataset")


# --------------------------------------------------------------------------- per-file work


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
        rel = _rel(path, root)
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
        rel = _rel(path, root)
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


def _rel(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _map_files(items: list[dict], fn, n_groups: int, **kwargs) -> pa.Table:
    """Run `fn` over groups of files, one Ray task per group, and gather its rows by file.

    `fn` takes a table with one row per file (its `file` id, `path`, ...) and returns one row
    per file. Tasks, not a Ray Data Dataset: each pass is a plain fan-out of pyarrow reads or
    rewrites plus a gather, and on a 2-core machine Ray Data's first use (its helper actors,
    its import in every worker) measured 3-5 s on top of the same work.
    """
    import ray

    task = ray.remote(num_cpus=1)(fn)
    table = pa.Table.from_pylist(items)
    groups = [g for g in np.array_split(np.arange(len(items)), n_groups) if len(g)]
    refs = [task.remote(table.slice(int(g[0]), len(g)), **kwargs) for g in groups]
    return pa.concat_tables(ray.get(refs)).sort_by("file")


def _first_error(result: pa.Table) -> str | None:
    errs = result.filter(pc.is_valid(result["error"]))
    if errs.num_rows == 0:
        return None
    msg = errs["error"][0].as_py()
    if errs.num_rows > 1:
        msg += f" (and {errs.num_rows - 1} more file(s) with errors)"
    return msg


def _flat(result: pa.Table, name: str) -> np.ndarray:
    return pc.list_flatten(result[name]).to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- tasks


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


# --------------------------------------------------------------------------- the job


@dataclass
class LabelResult:
    frames: int
    files: int
    cuts: dict[int, advantage.Cuts]
    task_texts: list[str]
    counts: dict[int, int]  # task_index -> frames
    group_names: dict[int, str] = field(default_factory=dict)
    group_frames: dict[int, int] = field(default_factory=dict)
    histograms: dict = field(default_factory=dict)  # group -> (counts, edges) or None
    files_rewritten: int = 0
    mlflow_run: str | None = None
    seconds: float = 0.0


def _group_name(g: int, cfg: LabelConfig, bases: list[str]) -> str:
    stage = g % cfg.stage_nums
    if cfg.per_task_threshold:
        return f"task {g // cfg.stage_nums} ({bases[g // cfg.stage_nums]!r}) stage {stage}"
    return f"stage {stage}"


def _report_header(cfg: LabelConfig) -> list[str]:
    out = [
        f"Processing data from: {cfg.dataset}",
        f"Discretization type: {cfg.discretion_type}",
    ]
    if cfg.discretion_type == "binary":
        out.append(f"Threshold: {cfg.threshold}% (top {cfg.threshold}% will be task_index=1)")
    else:
        out.append(f"Number of slices: {cfg.n_slices}")
    out += [f"Progress offset: {cfg.chunk_size} frames", f"Stage nums: {cfg.stage_nums}"]
    if cfg.stage_nums > 1:
        step = 1.0 / cfg.stage_nums
        out.append(
            "Stage boundaries (based on frame's stage_progress_gt): "
            f"{[step * i for i in range(cfg.stage_nums + 1)]}"
        )
    out.append("-" * 80)
    return out


def _report_groups(
    cfg: LabelConfig,
    stats: dict[int, dict],
    frames: dict[int, int],
    cuts: dict[int, advantage.Cuts],
    bases: list[str],
) -> list[str]:
    """The reference's statistics block, one section per stage (per task and stage)."""
    out = []
    total = sum(frames.values())
    out.append(f"\nTotal frames processed: {total}")
    step = 1.0 / cfg.stage_nums
    if cfg.stage_nums > 1:
        out.append("\nFrames per stage:")
        for g, n in frames.items():
            s = g % cfg.stage_nums
            pct = 100.0 * n / total if total > 0 else 0
            label = (
                f"  Stage {s}" if not cfg.per_task_threshold else f"  {_group_name(g, cfg, bases)}"
            )
            out.append(
                f"{label} (stage_progress_gt in [{step * s:.3f}, {step * (s + 1):.3f})): "
                f"{n} frames ({pct:.1f}%)"
            )
    for g, n in frames.items():
        s = g % cfg.stage_nums
        out.append(f"\n{'=' * 80}")
        if cfg.per_task_threshold:
            out.append(f"{_group_name(g, cfg, bases).upper()} REWARD STATISTICS")
        elif cfg.stage_nums > 1:
            out.append(
                f"STAGE {s} REWARD STATISTICS (stage_progress_gt in "
                f"[{step * s:.3f}, {step * (s + 1):.3f}))"
            )
        else:
            out.append("REWARD STATISTICS")
        out.append("=" * 80)
        st = stats[g]
        out += [
            f"Frames count: {n}",
            f"Mean:   {st['mean']:.6f}",
            f"Std:    {st['std']:.6f}",
            f"Min:    {st['min']:.6f}",
            f"Max:    {st['max']:.6f}",
            "\nPercentiles:",
        ]
        out += [f"  {p:3d}%: {v:.6f}" for p, v in st["percentiles"].items()]
        b = cuts[g].values
        if n == 0:
            out.append(f"\nWarning: Stage {s} has no data!")
        elif cfg.discretion_type == "binary":
            out.append(f"\nThreshold value (top {cfg.threshold}%): {b[0]:.6f}")
        else:
            out.append(f"\n{cfg.n_slices}-Slices Boundaries (higher reward -> higher task_index):")
            for i in range(len(b)):
                if i < len(b) - 1:
                    out.append(f"  task_index={i}: reward in [{b[i]:.6f}, {b[i + 1]:.6f})")
                else:
                    out.append(f"  task_index={i}: reward >= {b[i]:.6f}")
    out.append("=" * 80)
    return out


def _episode_labels(
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
    from pipelines.dataset import QUANTILES

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


def _stage_metadata(ds: LeRobotDataset, texts: list[str], episode_tasks, task_stats) -> list:
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


def run(cfg: LabelConfig, out=print) -> LabelResult:
    """Label a dataset (see the module docstring); DatasetError for anything wrong with it."""
    t0 = time.time()
    cfg.validate()
    if not cfg.dry_run:
        check_job_output(cfg.dataset, "dataset (labeled in place)")
    if cfg.mlflow and not cfg.dry_run:
        check_tracking_uri()
    root = Path(cfg.dataset)
    if (root / JOURNAL).exists():  # a labeling killed while it put its files in place
        if cfg.dry_run:
            raise DatasetError(
                f"{root / JOURNAL}: a killed run left its commit unfinished; run the command "
                "without --dry-run to finish it"
            )
        n = finish_interrupted_commit(root)
        print(
            f"finished the commit of an interrupted run ({n} file(s) put in place)", file=sys.stderr
        )
    ds = LeRobotDataset(cfg.dataset)
    files = ds.data_files(cfg.data_dir)
    if not files:
        raise DatasetError(f"{ds.root / cfg.data_dir}: no chunk-*/*.parquet files (empty dataset)")
    bases, episode_task = resolve_tasks(ds, cfg)
    if cfg.data_dir == "data":
        missing = ds.missing()
        for line in missing.lines():
            if not line.startswith("video"):
                print(f"warning: {line}", file=sys.stderr)

    top_column = None
    if cfg.intervention_positive:
        names = parquet_column_names(files[0])
        top_column = INTERVENTION_COLUMN if INTERVENTION_COLUMN in names else None
        if top_column is None and "data_type" in names:
            top_column = "data_type"
        if top_column is None:
            raise DatasetError(
                f"{ds.relative(files[0])}: missing column {INTERVENTION_COLUMN!r} "
                "(needed by --intervention-positive)"
            )

    tracked = None
    if cfg.mlflow and not cfg.dry_run:
        from pipelines.runtime.tracking import TrackedRun

        tracked = TrackedRun("flywheel-label")
    try:
        result = _label(cfg, ds, files, bases, episode_task, top_column, out)
    except BaseException:
        if tracked is not None:
            tracked.abort()
        raise
    result.seconds = time.time() - t0
    if tracked is not None:
        try:
            result.mlflow_run = _log_mlflow(tracked, cfg, ds, result)
        except TrackingError as e:
            print(f"warning: the labels are written, but logging them failed: {e}", file=sys.stderr)
    return result


def _label(cfg, ds, files, bases, episode_task, top_column, out) -> LabelResult:
    """The two Ray Data passes and the metadata (see the module docstring)."""
    from pipelines.runtime.cluster import cluster_cpus, connect

    plan = FramePlan(cfg.advantage_source, cfg.chunk_size, cfg.stage_nums, top_column)

    connect(cfg.ray_address)
    n_groups = max(1, min(len(files), 4 * cluster_cpus()))
    items = [{"file": i, "path": str(p)} for i, p in enumerate(files)]
    root = str(ds.root)

    for line in _report_header(cfg):
        out(line)
    out(f"Found {len(files)} parquet files")
    out("Collecting rewards from all files...")
    scan = _map_files(items, scan_files, n_groups, plan=plan, root=root)
    err = _first_error(scan)
    if err:
        raise DatasetError(err)

    rewards = _flat(scan, "rewards")
    stages = _flat(scan, "stages")
    top = _flat(scan, "top").astype(bool) if top_column else None
    seg_episodes, seg_lengths = _flat(scan, "episodes"), _flat(scan, "lengths")
    if len(rewards) == 0:
        raise DatasetError(f"{ds.root / cfg.data_dir}: the episode files hold no frames")
    if episode_task is not None:
        unknown = sorted(set(np.unique(seg_episodes).tolist()) - set(episode_task))
        if unknown:
            raise DatasetError(
                f"{ds.root}/meta: episode {unknown[0]} has data but is not listed "
                "(its task is unknown); pass --task TEXT"
            )
        seg_task = np.array([episode_task[int(e)] for e in seg_episodes], dtype=np.int32)
        task_pos = np.repeat(seg_task, seg_lengths)
    else:
        task_pos = np.zeros(len(rewards), dtype=np.int32)

    groups = task_pos * cfg.stage_nums + stages if cfg.per_task_threshold else stages
    n_group_ids = cfg.stage_nums * (len(bases) if cfg.per_task_threshold else 1)
    # The reference gathers K = 1 rewards as Python floats, K > 1 as float32 scalars.
    value_dtype = np.float64 if cfg.stage_nums == 1 else np.float32
    cuts, stats, frames, histograms = {}, {}, {}, {}
    for g in range(n_group_ids):
        vals = rewards[groups == g].astype(value_dtype)
        ordered = np.sort(vals)
        cuts[g] = advantage.compute_cuts(ordered, cfg.discretion_type, cfg.threshold, cfg.n_slices)
        stats[g] = advantage.reward_statistics(vals, ordered)
        frames[g] = len(vals)
        histograms[g] = np.histogram(ordered, bins=100) if len(vals) else None
        del vals, ordered
    for line in _report_groups(cfg, stats, frames, cuts, bases):
        out(line)

    labels = advantage.assign_labels(
        rewards,
        groups,
        cuts,
        cfg.discretion_type,
        cfg.n_slices,
        compare_float32=cfg.stage_nums == 1,
        top=top,
    )
    task_index = task_pos * cfg.n_labels + labels
    texts = advantage.labeled_task_texts(bases, cfg.discretion_type, cfg.n_slices)
    counts = dict(enumerate(np.bincount(task_index, minlength=len(texts)).tolist()))
    result = LabelResult(
        frames=len(rewards),
        files=len(files),
        cuts=cuts,
        task_texts=texts,
        counts=counts,
        group_names={g: _group_name(g, cfg, bases) for g in cuts},
        group_frames=frames,
        histograms=histograms,
    )
    if cfg.dry_run:
        out("\nDry run mode - no files will be modified")
        return result

    remove_stale_temps(ds.root / cfg.data_dir)
    remove_stale_temps(ds.meta_dir)
    out(f"\nAssigning task_index to {len(files)} files...")
    # Two-phase commit: every new file is staged as a temporary (the whole file read, so any
    # corruption shows here), then all go in at once; a failure before that changes nothing.
    # Files whose task_index already holds these labels (a rerun) are not rewritten.
    bounds = np.r_[0, np.cumsum(pc.list_value_length(scan["rewards"]).to_numpy())]
    current = _flat(scan, "current")
    ti32 = task_index.astype(np.int32)
    todo = []
    for i, item in enumerate(items):
        a, b = bounds[i], bounds[i + 1]
        if not np.array_equal(current[a:b], task_index[a:b]):
            todo.append({**item, "task_index": ti32[a:b].tobytes()})
    result.files_rewritten = len(todo)
    staged: list[tuple[Path, Path]] = []
    try:
        if todo:
            done = _map_files(todo, stage_files, min(n_groups, len(todo)), root=root)
            paths = {item["file"]: item["path"] for item in todo}
            staged = [
                (Path(t), Path(paths[f]))
                for f, t in zip(done["file"].to_pylist(), done["temp"].to_pylist(), strict=True)
                if t is not None
            ]
            err = _first_error(done)
            if err:
                raise DatasetError(f"{err} (nothing was changed)")
        episode_tasks, task_stats = _episode_labels(seg_episodes, seg_lengths, task_index, texts)
        staged += _stage_metadata(ds, texts, episode_tasks, task_stats)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        remove_stale_temps(ds.root / cfg.data_dir)  # those of a staging task that died
        raise
    commit_staged(ds.root, staged)
    meta_file = "tasks.parquet" if ds.version == V30 else "tasks.jsonl"
    out(f"\n✓ Updated {ds.meta_dir / meta_file} with {len(texts)} task(s)")
    return result


def _log_mlflow(tracked, cfg: LabelConfig, ds: LeRobotDataset, result: LabelResult) -> str:
    params = {k: v for k, v in asdict(cfg).items() if k not in ("ray_address", "mlflow")}
    tracked.start(f"label {ds.root.name}", params)
    metrics = {
        "frames": result.frames,
        "files": result.files,
        "files_rewritten": result.files_rewritten,
        "wall_seconds": result.seconds,
    }
    for g, cut in result.cuts.items():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.group_names[g]).strip("_")
        metrics[f"{name}/frames"] = result.group_frames[g]
        if cfg.discretion_type == "binary":
            metrics[f"{name}/threshold"] = cut.values[0]
        else:
            for j, b in enumerate(cut.values):
                metrics[f"{name}/boundary_{j}"] = b
    for ti, c in result.counts.items():
        metrics[f"label_count/task_index_{ti}"] = c
    tracked.log_metrics(metrics)
    tracked.log_text(
        "".join(f"{i}\t{t}\t{result.counts[i]}\n" for i, t in enumerate(result.task_texts)),
        "task_index_counts.tsv",
    )
    tracked.log_figure(
        reward_histogram_figure,
        "reward_histogram.png",
        panels=[
            (
                result.group_names[g],
                result.group_frames[g],
                result.histograms[g],
                result.cuts[g].values,
            )
            for g in result.cuts
        ],
        binary=cfg.discretion_type == "binary",
        xlabel=f"reward ({cfg.advantage_source}, chunk {cfg.chunk_size})",
    )
    return tracked.finish()


def reward_histogram_figure(panels, binary: bool, xlabel: str):
    """Histogram of each group's rewards with its threshold (or slice boundaries) drawn."""
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, frames, hist, cuts) in zip(axes.flat, panels, strict=False):
        if hist is not None:
            ax.stairs(hist[0], hist[1], fill=True, alpha=0.6)
        for j, b in enumerate(cuts):
            ax.axvline(
                b,
                color="red",
                lw=1,
                label=("threshold" if binary else "slice bounds") if j == 0 else None,
            )
        ax.set_title(f"{name}: {frames} frames", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frames")
        if hist is not None:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Rewards per group, with the labeling cuts")
    return fig


# --------------------------------------------------------------------------- CLI


def build_parser(prog: str = "flywheel label") -> argparse.ArgumentParser:
    p = JobParser(
        prog=prog,
        description="Stage-0 GT labeling: rewards from progress, percentile cuts, task_index "
        "labels written back to the LeRobot v2.1 or v3.0 dataset (in place).",
    )
    p.add_argument("dataset", help="LeRobot v2.1 or v3.0 dataset folder")
    p.add_argument(
        "--threshold",
        type=float,
        default=70.0,
        help="binary: top X%% of each stage's rewards get task_index=1 (default 70)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=50,
        help="frames to look ahead for the progress difference (default 50)",
    )
    p.add_argument("--discretion-type", choices=advantage.DISCRETION_TYPES, default="binary")
    p.add_argument("--n-slices", type=int, default=10, help="slices for n_slices (default 10)")
    p.add_argument("--advantage-source", choices=advantage.ADVANTAGE_SOURCES, default="progress")
    p.add_argument(
        "--stage-nums",
        type=int,
        default=1,
        help="stages by stage_progress_gt, each with its own percentiles (default 1)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the statistics, change nothing")
    p.add_argument(
        "--task",
        default=None,
        help="task text for the labels (default: the dataset's own task texts)",
    )
    p.add_argument(
        "--data-dir",
        default="data",
        help="folder of episode parquet files, e.g. data_KAI0_100000 (default data)",
    )
    p.add_argument(
        "--intervention-positive",
        action="store_true",
        help="frames recorded under human intervention always get the top label",
    )
    p.add_argument(
        "--per-task-threshold",
        action="store_true",
        help="percentiles per task (and stage) instead of across all tasks",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="existing Ray cluster (default: RAY_ADDRESS, else a local cluster)",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel label") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = LabelConfig(
        dataset=args.dataset,
        threshold=args.threshold,
        chunk_size=args.chunk_size,
        discretion_type=args.discretion_type,
        n_slices=args.n_slices,
        advantage_source=args.advantage_source,
        stage_nums=args.stage_nums,
        dry_run=args.dry_run,
        task=args.task,
        data_dir=args.data_dir,
        intervention_positive=args.intervention_positive,
        per_task_threshold=args.per_task_threshold,
        ray_address=args.ray_address,
        mlflow=not args.no_mlflow,
    )
    try:
        result = run(cfg)
    except (DatasetError, ClusterError, TrackingError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if not cfg.dry_run:
        print(
            f"\nLabeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s): "
        )
        for i, text in enumerate(result.task_texts):
            print(f"  task_index={i} {text!r}: {result.counts[i]} frames")
        print(f"Results: {Path(cfg.dataset).resolve()} (meta/tasks.jsonl, {cfg.data_dir}/)")
        if result.mlflow_run:
            print(result.mlflow_run)
        print("\n✓ Task completed successfully!")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.label"))
