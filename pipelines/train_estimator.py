"""`flywheel train-estimator DATASET --variant kai0|pi06`: Stage 1 on Ray Train (DDP).

The advantage estimator (`pipelines.estimator`: model, data, training) on every worker's
shard of the training episodes; checkpoints every `--checkpoint-every` steps in
`--storage/--name`, and running the same command again resumes from the last one (Ray Train
V2: same name and storage); a worker that dies mid-run is replaced and the group resumes from
the last checkpoint (`--max-failures`). Rank 0 logs the losses, the held-out Spearman
correlation of the predicted value with stage_progress_gt and a PNG of predicted against true
progress to MLflow.

Also `python -m pipelines.train_estimator` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.estimator.config import EstimatorRunConfig, EstimatorTrainConfig
from pipelines.estimator.model import VARIANTS
from pipelines.estimator.training import run
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.run_config import add_run_flags
from pipelines.runtime.training import already_trained
from pipelines.vision.encoders import ENCODERS


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a LeRobot dataset with stage_progress_gt")
    p.add_argument("--variant", choices=VARIANTS, default="kai0", help="two frames or one")
    p.add_argument("--image-size", type=int, default=64, help="the model's input size in pixels")
    p.add_argument(
        "--encoder", choices=sorted(ENCODERS), default="resnet_small", help="image encoder"
    )
    add_run_flags(
        p,
        EstimatorRunConfig(),
        batch_help="pairs per worker per step",
        name_help="run name; unset: estimator-<variant>",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-estimator") -> int:
    cfg = build_parser(prog).parse_config(argv, EstimatorTrainConfig.from_flags)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    if already_trained(result, cfg.run_name, cfg.run.steps):
        print(f"Checkpoint: {result.checkpoint}")
        return 0
    print(
        f"Trained {cfg.variant} to step {result.step} in {result.seconds:.0f} s: "
        f"loss {m.get('loss', float('nan')):.4f}"
        + (f", held-out Spearman {m['eval_spearman']:.3f}" if "eval_spearman" in m else "")
    )
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_estimator"))
