"""`flywheel train-classifier DATASET [--labels CSV]`: the reward classifier on Ray Train (DDP).

A binary success classifier over the dataset's cameras (`pipelines.classifier`): labels from a
success-frames CSV (`--labels`, seed 002's `episode,success_start,env_reset_start`, as
`flywheel synth --steps-after-success` and `flywheel robot teleop` write beside the dataset) or
from `next.reward` (1 = success frame); class-balanced batches with random-shift augmentation
at 128 x 128; held-out validation episodes choose the threshold (best F1, or
`--min-precision`), held-out test episodes measure it; checkpoints and resume as for the
estimator; MLflow from rank 0. `flywheel serve-reward CHECKPOINT` serves the result.

Also `python -m pipelines.train_classifier` (for `ray job submit`).
"""

from __future__ import annotations

from pipelines.classifier.config import ClassifierTrainConfig
from pipelines.classifier.labels import success_csv_path
from pipelines.classifier.training import ClassifierTrainResult, run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.training import training_summary


def report(cfg: ClassifierTrainConfig, result: ClassifierTrainResult) -> list[str]:
    lines = []
    if cfg.labels is None and success_csv_path(cfg.dataset).exists():
        lines.append(
            f"note: labeled from next.reward; {success_csv_path(cfg.dataset)} exists (--labels)"
        )
    if result.unlabeled:
        lines.append(
            f"note: {len(result.unlabeled)} episodes are not in {cfg.labels} and were not used"
        )
    m = result.metrics
    done = (
        f"Trained the {cfg.encoder} classifier to step {result.step} in {result.seconds:.0f} s "
        f"(loss {m.get('loss', float('nan')):.4f}, {m.get('samples_per_s', 0):.0f} samples/s)"
    )
    lines.append(training_summary(result, cfg.run_name, cfg.run.steps, done))
    lines.append(f"Threshold {result.threshold:.4f}: {result.threshold_rule}")
    if "test_accuracy" in m:
        lines.append(
            f"Held-out test episodes ({m['test_frames']} frames): accuracy "
            f"{m['test_accuracy']:.4f}, precision {m['test_precision']:.4f}, recall "
            f"{m['test_recall']:.4f} (tp {m['test_tp']}, fp {m['test_fp']}, fn {m['test_fn']}, "
            f"tn {m['test_tn']})"
        )
    return [*lines, f"Checkpoint: {result.checkpoint}"]


JOB = Job("train-classifier", __doc__, ClassifierTrainConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_classifier"))
