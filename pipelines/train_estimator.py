"""`flywheel train-estimator DATASET --variant kai0|pi06|recap`: Stage 1 on Ray Train (DDP).
Use `--variant recap` for any recording with episode outcomes (add them with `flywheel
outcomes`), such as one made with lerobot-record: no progress column needed. Use kai0 (two
frames) or pi06 (one) for data annotated with stage_progress_gt.

`recap` is RECAP's distributional value (201 bins over [-1, 0]) of normalized
steps-to-success with a failure penalty (`--c-fail-coef`), from every camera, the normalized
state and the task text; episodes without an outcome are refused unless `--default-outcome
failure`.

The advantage estimator (`pipelines.estimator`: model, data, training) on every worker's
shard of the training episodes; checkpoints every `--checkpoint-every` steps in
`--storage/--name`, and running the same command again resumes from the last one (Ray Train
V2: same name and storage); a worker that dies mid-run is replaced and the group resumes from
the last checkpoint (`--max-failures`). Rank 0 logs the losses, the held-out evaluation
(kai0/pi06: Spearman of the predicted value with stage_progress_gt; recap: MAE, Spearman of V
with the target over successful episodes, AUROC of successes against failures at their
midpoints) and its PNG to MLflow.

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
    held = [
        f", held-out {name} {m[key]:.3f}"
        for key, name in (
            ("eval_spearman", "Spearman"),
            ("eval_spearman_success", "Spearman (successes)"),
            ("eval_auroc_midpoint", "AUROC at midpoints"),
        )
        if key in m
    ]
    done = (
        f"Trained {cfg.variant} to step {result.step} in {result.seconds:.0f} s: "
        f"loss {m.get('loss', float('nan')):.4f}" + "".join(held)
    )
    summary = training_summary(result, cfg.run_name, cfg.run.steps, done)
    return [summary, f"Checkpoint: {result.checkpoint}"]


JOB = Job("train-estimator", __doc__, EstimatorTrainConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_estimator"))
