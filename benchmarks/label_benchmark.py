"""Benchmark of `flywheel label` against the I/O floor (not a test).

Builds a dataset of 4,000 episodes of ~600 frames (2.4 M frames; 14-D float32 state and action
lists, progress and stage_progress_gt), then times, alternately, `repeats` times each:

* the I/O floor: one process reading every episode file with pyarrow and rewriting it
  (temp file + rename), without and with durability (fsync of each file and of the folder);
* `flywheel label DATASET --stage-nums 2` end to end as a user runs it (a fresh process: Python
  start-up, Ray start-up, scan, staging, commit, metadata, MLflow run), wall clock, durable
  (the default) and with FLYWHEEL_FSYNC=0 (what the fsyncs cost).

    python benchmarks/label_benchmark.py [--episodes 4000] [--repeats 3] [--keep DIR]

Prints a table and writes benchmarks/results/label.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.dataset import LeRobotDataset  # noqa: E402
from pipelines.labeling.progress_dataset import make_progress_dataset  # noqa: E402


def io_floor(root: Path, durable: bool = False) -> float:
    """Read and rewrite every episode file in one process with pyarrow's defaults.

    `durable`: each new file is fsynced before its rename and the folder after it, as a write
    that survives power loss must be. The rewrite also puts task_index back to 0 (as the
    dataset was built), so that every `flywheel label` run below relabels from scratch.
    """
    files = LeRobotDataset(root).data_files()
    t = time.perf_counter()
    for f in files:
        table = pq.read_table(f)
        i = table.column_names.index("task_index")
        table = table.set_column(i, "task_index", pa.array(np.zeros(table.num_rows, np.int64)))
        tmp = f.with_suffix(".rewrite")
        with open(tmp, "wb") as out:
            pq.write_table(table, out)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, f)
        if durable:
            fd = os.open(f.parent, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    return time.perf_counter() - t


def label_end_to_end(root: Path, workdir: Path, fsync: bool = True) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "pipelines.cli", "label", str(root), "--stage-nums", "2"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
    env["FLYWHEEL_FSYNC"] = "1" if fsync else "0"
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"flywheel label failed:\n{proc.stderr[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_maxrss  # KiB, largest child so far (the driver)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", default=None, help="build the dataset here and keep it")
    args = p.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    root = work / "dataset"
    t = time.perf_counter()
    if not (root / "meta" / "info.json").exists():
        make_progress_dataset(
            root,
            episodes=args.episodes,
            seed=0,
            min_length=500,
            max_length=700,
            state_dim=14,
            stage_nums=2,
        )
    build = time.perf_counter() - t
    ds = LeRobotDataset(root)
    frames = int(ds.info["total_frames"])
    size_mb = sum(f.stat().st_size for f in ds.data_files()) / 1e6
    print(
        f"dataset: {args.episodes} episodes, {frames} frames, {size_mb:.0f} MB "
        f"(built in {build:.1f} s) at {root}"
    )

    io_floor(root)  # warm the page cache once, as a user's second run would see it
    floors, durable_floors, runs, runs_nofsync, rss = [], [], [], [], 0
    # Each timed command starts with the page cache warm and no dirty pages left to flush by an
    # earlier one (os.sync), and each label run starts from the unlabeled dataset.
    for i in range(args.repeats):
        os.sync()
        floors.append(io_floor(root))
        os.sync()
        wall, rss = label_end_to_end(root, work)
        runs.append(wall)
        os.sync()
        durable_floors.append(io_floor(root, durable=True))
        os.sync()
        wall_nf, _ = label_end_to_end(root, work, fsync=False)
        runs_nofsync.append(wall_nf)
        print(
            f"  repeat {i}: floor {floors[-1]:.2f} s (durable {durable_floors[-1]:.2f} s), "
            f"flywheel label {wall:.2f} s (FLYWHEEL_FSYNC=0 {wall_nf:.2f} s)"
        )
    med = statistics.median
    floor, durable, label, label_nf = (med(x) for x in (floors, durable_floors, runs, runs_nofsync))
    result = {
        "episodes": args.episodes,
        "frames": frames,
        "data_mb": round(size_mb, 1),
        "cpus": os.cpu_count(),
        "io_floor_s": round(floor, 2),
        "io_floor_durable_s": round(durable, 2),
        "label_end_to_end_s": round(label, 2),
        "label_no_fsync_s": round(label_nf, 2),
        "fsync_cost_s": round(label - label_nf, 2),
        "label_frames_per_s": round(frames / label),
        "ratio_to_floor": round(label / floor, 3),
        "ratio_to_durable_floor": round(label / durable, 3),
        "ratio_no_fsync_to_floor": round(label_nf / floor, 3),
        "driver_max_rss_mb": round(rss / 1024, 1),
        "all_floor_s": [round(x, 2) for x in floors],
        "all_floor_durable_s": [round(x, 2) for x in durable_floors],
        "all_label_s": [round(x, 2) for x in runs],
        "all_label_no_fsync_s": [round(x, 2) for x in runs_nofsync],
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "label.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
