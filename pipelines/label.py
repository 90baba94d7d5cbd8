"""`flywheel label DATASET`: Stage-0 GT labeling, in place, distributed over Ray.

Rewards from progress, percentile cuts per stage, task_index labels written back to the LeRobot
v2.1 or v3.0 dataset as a two-phase commit that never leaves a half-labeled dataset. The design
is in `pipelines.labeling.driver`; this module parses the flags.

Also `python -m pipelines.label` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipelines.labeling import LabelConfig, LabelResult, run
from pipelines.labeling.advantage import ADVANTAGE_SOURCES, DISCRETION_TYPES
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.flags import config_from_flags

__all__ = ["LabelConfig", "LabelResult", "build_parser", "main", "run"]


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
        help="binary: top X%% of each stage's rewards get task_index=1",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=50,
        help="frames to look ahead for the progress difference",
    )
    p.add_argument(
        "--discretion-type",
        choices=DISCRETION_TYPES,
        default="binary",
        help="binary: a top share and the rest; n_slices: equal slices of each stage's rewards",
    )
    p.add_argument("--n-slices", type=int, default=10, help="slices for n_slices")
    p.add_argument(
        "--advantage-source",
        choices=ADVANTAGE_SOURCES,
        default="progress",
        help="the column the rewards are computed from",
    )
    p.add_argument(
        "--stage-nums",
        type=int,
        default=1,
        help="stages by stage_progress_gt, each with its own percentiles",
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
        help="folder of episode parquet files, e.g. data_KAI0_100000",
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


def build_config(args: argparse.Namespace) -> LabelConfig:
    return config_from_flags(LabelConfig, args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel label") -> int:
    cfg = build_parser(prog).parse_config(argv, build_config)
    result = run_job(run, cfg, prog)
    if result is None:
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
