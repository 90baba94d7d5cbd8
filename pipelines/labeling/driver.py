"""`run(LabelConfig)`: Stage-0 GT labeling of a dataset, in place, distributed over Ray.

LeRobot v2.1 (one file per episode) and v3.0 (multi-episode files) alike.

The job holds the dataset's writer lock from start to end (`exclusive_writer`: a second
writer is a one-line error, and only the holder finishes a killed run's commit or removes stale
temporaries); a --dry-run only reads. Before any work each data file's footer and row count are
checked against the episode metadata (`check_footers`): a truncated file is a one-line error.

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
file in place; a run killed during the commit is finished by the next writer, under the lock,
before it does anything else. Staging needs temporary disk space the size of every data file
whose labels change (all of them on a first labeling) plus the metadata, freed at the commit.

The labels depend only on columns the job never changes, so a run killed at any point and
started again with the same command ends with exactly the dataset an uninterrupted run gives.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from pipelines.dataset import (
    JOURNAL,
    V30,
    DatasetError,
    LeRobotDataset,
    check_footers,
    commit_staged,
    exclusive_writer,
    parquet_column_names,
    remove_stale_temps,
)
from pipelines.labeling import advantage
from pipelines.labeling.config import INTERVENTION_COLUMN, LabelConfig
from pipelines.labeling.files import (
    FramePlan,
    first_error,
    flat_column,
    map_files,
    scan_files,
    stage_files,
)
from pipelines.labeling.metadata import episode_labels, resolve_tasks, stage_metadata
from pipelines.labeling.report import (
    LabelResult,
    group_name,
    log_labeling,
    report_groups,
    report_header,
)
from pipelines.runtime.cluster import check_job_output, cluster_cpus, connect
from pipelines.runtime.tracking import TrackedRun, TrackingError, check_tracking_uri


def run(cfg: LabelConfig, out=print) -> LabelResult:
    """Label a dataset (the module docstring); DatasetError for anything wrong with it."""
    t0 = time.time()
    cfg.validate()
    if not cfg.dry_run:
        check_job_output(cfg.dataset, "dataset (labeled in place)")
    if cfg.mlflow and not cfg.dry_run:
        check_tracking_uri()
    root = Path(cfg.dataset)
    if cfg.dry_run:  # a reader: it finishes no commit
        if (root / JOURNAL).exists():
            raise DatasetError(
                f"{root / JOURNAL}: a killed run left its commit unfinished; run the command "
                "without --dry-run to finish it"
            )
        return _run(cfg, out, t0)
    if not root.is_dir():  # the lock would create the folder
        raise DatasetError(f"{root}: no such dataset folder")
    interrupted = (root / JOURNAL).exists()
    # One writer at a time; holding the lock finishes a killed run's commit (a labeling killed
    # while it put its files in place) and removes stale temporaries, never another's.
    with exclusive_writer(root, "flywheel label"):
        if interrupted and not (root / JOURNAL).exists():
            print("finished the commit of an interrupted run", file=sys.stderr)
        return _run(cfg, out, t0)


def _run(cfg: LabelConfig, out, t0: float) -> LabelResult:
    """`run` once the dataset may be read (and, unless --dry-run, is this job's to write)."""
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
    # Each present file's footer and row count against the metadata (a missing file is the
    # warning above): a truncated or damaged file is refused before any work.
    damaged = [f for f in check_footers(ds, cfg.data_dir) if not f.endswith(": missing")]
    if damaged:
        more = f" (and {len(damaged) - 1} more problem(s))" if len(damaged) > 1 else ""
        raise DatasetError(f"{ds.root}: {damaged[0]}{more}; nothing was changed")

    top_column = None
    if cfg.intervention_positive:
        names = parquet_column_names(files[0])
        top_column = INTERVENTION_COLUMN if INTERVENTION_COLUMN in names else None
        if top_column is None and "data_type" in names:
            top_column = "data_type"
        if top_column is None:  # a lerobot-record recording: nothing marks an intervention
            print(
                f"warning: {ds.relative(files[0])}: no {INTERVENTION_COLUMN!r} or 'data_type' "
                "column, so --intervention-positive forces no frame positive",
                file=sys.stderr,
            )

    tracked = None
    if cfg.mlflow and not cfg.dry_run:
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
            result.mlflow_run = log_labeling(tracked, cfg, ds, result)
        except TrackingError as e:
            print(f"warning: the labels are written, but logging them failed: {e}", file=sys.stderr)
    return result


def _label(cfg, ds, files, bases, episode_task, top_column, out) -> LabelResult:
    """The two Ray Data passes and the metadata (see the module docstring)."""
    plan = FramePlan(cfg.advantage_source, cfg.chunk_size, cfg.stage_nums, top_column)

    connect(cfg.ray_address)
    n_groups = max(1, min(len(files), 4 * cluster_cpus()))
    items = [{"file": i, "path": str(p)} for i, p in enumerate(files)]
    root = str(ds.root)

    for line in report_header(cfg):
        out(line)
    out(f"Found {len(files)} parquet files")
    out("Collecting rewards from all files...")
    scan = map_files(items, scan_files, n_groups, plan=plan, root=root)
    err = first_error(scan)
    if err:
        raise DatasetError(err)

    rewards = flat_column(scan, "rewards")
    stages = flat_column(scan, "stages")
    top = flat_column(scan, "top").astype(bool) if top_column else None
    seg_episodes, seg_lengths = flat_column(scan, "episodes"), flat_column(scan, "lengths")
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
    for line in report_groups(cfg, stats, frames, cuts, bases):
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
        group_names={g: group_name(g, cfg, bases) for g in cuts},
        group_frames=frames,
        histograms=histograms,
    )
    if cfg.dry_run:
        out("\nDry run mode - no files will be modified")
        return result

    out(f"\nAssigning task_index to {len(files)} files...")
    # Two-phase commit: every new file is staged as a temporary (the whole file read, so any
    # corruption shows here), then all go in at once; a failure before that changes nothing.
    # Files whose task_index already holds these labels (a rerun) are not rewritten.
    bounds = np.r_[0, np.cumsum(pc.list_value_length(scan["rewards"]).to_numpy())]
    current = flat_column(scan, "current")
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
            done = map_files(todo, stage_files, min(n_groups, len(todo)), root=root)
            paths = {item["file"]: item["path"] for item in todo}
            staged = [
                (Path(t), Path(paths[f]))
                for f, t in zip(done["file"].to_pylist(), done["temp"].to_pylist(), strict=True)
                if t is not None
            ]
            err = first_error(done)
            if err:
                raise DatasetError(f"{err} (nothing was changed)")
        episode_tasks, task_stats = episode_labels(seg_episodes, seg_lengths, task_index, texts)
        staged += stage_metadata(ds, texts, episode_tasks, task_stats)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        remove_stale_temps(ds.root / cfg.data_dir)  # those of a staging task that died
        raise
    commit_staged(ds.root, staged)
    meta_file = "tasks.parquet" if ds.version == V30 else "tasks.jsonl"
    out(f"\n✓ Updated {ds.meta_dir / meta_file} with {len(texts)} task(s)")
    return result
