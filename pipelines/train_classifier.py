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

import argparse
from collections.abc import Sequence

from pipelines.classifier.config import ClassifierRunConfig, ClassifierTrainConfig
from pipelines.classifier.labels import success_csv_path
from pipelines.classifier.training import run
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.run_config import add_run_flags
from pipelines.runtime.training import already_trained
from pipelines.vision.encoders import spatial_encoders


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a LeRobot dataset")
    p.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="success-frames CSV (episode,success_start,env_reset_start[,success_ranges]); "
        "unset: the dataset's next.reward",
    )
    p.add_argument(
        "--encoder",
        default="small_convnet",
        choices=spatial_encoders(),
        help="image encoder (small_convnet: fast on CPUs; resnet10 for GPUs)",
    )
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--image-size", type=int, default=128, help="the model's input size in pixels")
    p.add_argument("--shift", type=int, default=4, help="random-shift padding in pixels")
    p.add_argument(
        "--min-precision",
        type=float,
        default=None,
        metavar="P",
        help="choose the lowest threshold with validation precision >= P; unset: best F1",
    )
    add_run_flags(
        p,
        ClassifierRunConfig(),
        batch_help="frames per worker per step",
        name_help="run name; unset: classifier-<encoder>",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-classifier") -> int:
    cfg = build_parser(prog).parse_config(argv, ClassifierTrainConfig.from_flags)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    if cfg.labels is None and success_csv_path(cfg.dataset).exists():
        print(f"note: labeled from next.reward; {success_csv_path(cfg.dataset)} exists (--labels)")
    if result.unlabeled:
        print(f"note: {len(result.unlabeled)} episodes are not in {cfg.labels} and were not used")
    m = result.metrics
    if not already_trained(result, cfg.run_name, cfg.run.steps):
        print(
            f"Trained the {cfg.encoder} classifier to step {result.step} in {result.seconds:.0f} s "
            f"(loss {m.get('loss', float('nan')):.4f}, {m.get('samples_per_s', 0):.0f} samples/s)"
        )
    print(f"Threshold {result.threshold:.4f}: {result.threshold_rule}")
    if "test_accuracy" in m:
        print(
            f"Held-out test episodes ({m['test_frames']} frames): accuracy "
            f"{m['test_accuracy']:.4f}, precision {m['test_precision']:.4f}, recall "
            f"{m['test_recall']:.4f} (tp {m['test_tp']}, fp {m['test_fp']}, fn {m['test_fn']}, "
            f"tn {m['test_tn']})"
        )
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.train_classifier"))
