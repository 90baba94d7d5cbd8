"""Benchmark of `flywheel label` against the I/O floor (not a test).

Builds a dataset of 4,000 episodes of ~600 frames (2.4 M frames; 14-D float32 state and action
lists, progress and stage_progress_gt), then times, alternately, `repeats` times each:

* the I/O floor: one process reading every episode file with pyarrow and rewriting it;
* `flywheel label DATASET --stage-nums 2` end to end as a user runs it (a fresh process: Python
  start-up, Ray start-up, both passes, metadata, MLflow run), wall clock.

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
from pipelines.progress_dataset import make_progress_dataset  # noqa: E402


def io_floor(root: Path) -> float:
    """Read and rewrite every episode file in one process with pyarrow's defaults.

    The rewrite also puts task_index back to 0 (as the dataset was built), so that every
    `flywheel label` run below relabels from scratch instead of finding its own labels.
    """
    files = LeRobotDataset(root).data_files()
    t = time.perf_counter()
    for f in files:
        table = pq.read_table(f)
        i = table.column_names.index("task_index")
        table = table.set_column(i, "task_index", pa.array(np.zeros(table.num_rows, np.int64)))
        tmp = f.with_suffix(".rewrite")
        pq.write_table(table, tmp)
        os.replace(tmp, f)
    return time.perf_counter() - t


def label_end_to_end(root: Path, workdir: Path, extra: list[str]) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "pipelines.cli", "label", str(root), "--stage-nums", "2", *extra]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
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
    floors, runs, runs_nomlflow, rss = [], [], [], 0
    # Each timed command starts with the page cache warm and no dirty pages left to flush by an
    # earlier one (os.sync), and each label run starts from the unlabeled dataset.
    for i in range(args.repeats):
        os.sync()
        floors.append(io_floor(root))
        os.sync()
        wall, rss = label_end_to_end(root, work, [])
        runs.append(wall)
        os.sync()
        floors.append(io_floor(root))
        os.sync()
        wall_nm, _ = label_end_to_end(root, work, ["--no-mlflow"])
        runs_nomlflow.append(wall_nm)
        print(
            f"  repeat {i}: floor {floors[-2]:.2f} / {floors[-1]:.2f} s, flywheel label "
            f"{wall:.2f} s (--no-mlflow {wall_nm:.2f} s)"
        )
    floor, label, label_nm = (statistics.median(x) for x in (floors, runs, runs_nomlflow))
    result = {
        "episodes": args.episodes,
        "frames": frames,
        "data_mb": round(size_mb, 1),
        "cpus": os.cpu_count(),
        "io_floor_s": round(floor, 2),
        "label_end_to_end_s": round(label, 2),
        "label_no_mlflow_s": round(label_nm, 2),
        "label_frames_per_s": round(frames / label),
        "ratio_to_floor": round(label / floor, 3),
        "ratio_to_floor_no_mlflow": round(label_nm / floor, 3),
        "driver_max_rss_mb": round(rss / 1024, 1),
        "all_floor_s": [round(x, 2) for x in floors],
        "all_label_s": [round(x, 2) for x in runs],
        "all_label_no_mlflow_s": [round(x, 2) for x in runs_nomlflow],
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "label.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
