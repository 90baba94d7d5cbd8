"""`flywheel label DATASET`: Stage-0 GT labeling, in place, distributed over Ray.

Rewards from progress, percentile cuts per stage, task_index labels written back to the LeRobot
v2.1 or v3.0 dataset as a two-phase commit that never leaves a half-labeled dataset. The design
is in `pipelines.labeling.driver`; this module parses the flags.

Also `python -m pipelines.label` (for `ray job submit`).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.labeling import LabelConfig, LabelResult, run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process

__all__ = ["LabelConfig", "LabelResult", "build_parser", "main", "run"]


DESCRIPTION = (
    "Stage-0 GT labeling: rewards from progress, percentile cuts, task_index labels written "
    "back to the LeRobot v2.1 or v3.0 dataset (in place)."
)


def report(cfg: LabelConfig, result: LabelResult) -> list[str]:
    if cfg.dry_run:
        return []
    lines = [f"\nLabeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s): "]
    lines += [
        f"  task_index={i} {text!r}: {result.counts[i]} frames"
        for i, text in enumerate(result.task_texts)
    ]
    root = Path(cfg.dataset).resolve()
    tasks = "tasks.parquet" if (root / "meta" / "tasks.parquet").exists() else "tasks.jsonl"
    lines.append(f"Results: {root} (meta/{tasks}, {cfg.data_dir}/)")
    lines += [result.mlflow_run] if result.mlflow_run else []
    return [*lines, "\n✓ Task completed successfully!"]


JOB = Job("label", DESCRIPTION, LabelConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.label"))
