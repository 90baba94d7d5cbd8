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

from pipelines.estimator.config import EstimatorTrainConfig
from pipelines.estimator.training import run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.training import TrainingResult, training_summary


def report(cfg: EstimatorTrainConfig, result: TrainingResult) -> list[str]:
    m = result.metrics
    done = (
        f"Trained {cfg.variant} to step {result.step} in {result.seconds:.0f} s: "
        f"loss {m.get('loss', float('nan')):.4f}"
        + (f", held-out Spearman {m['eval_spearman']:.3f}" if "eval_spearman" in m else "")
    )
    summary = training_summary(result, cfg.run_name, cfg.run.steps, done)
    return [summary, f"Checkpoint: {result.checkpoint}"]


JOB = Job("train-estimator", __doc__, EstimatorTrainConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_estimator"))
