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

from pipelines.classifier.driver import TrainConfig, run
from pipelines.classifier.labels import success_csv_path
from pipelines.runtime.cli import JobParser, run_job
from pipelines.vision.encoders import spatial_encoders


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="success-frames CSV (episode,success_start,env_reset_start[,success_ranges]); "
        "default: the dataset's next.reward",
    )
    p.add_argument(
        "--encoder",
        default="small_convnet",
        choices=spatial_encoders(),
        help="image encoder (default small_convnet: fast on CPUs; resnet10 for GPUs)",
    )
    p.add_argument("--workers", type=int, default=2, help="DDP workers (default 2)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument(
        "--cpus-per-worker",
        type=int,
        default=None,
        help="default: the cluster's CPUs divided among the workers",
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32, help="frames per worker per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--shift", type=int, default=4, help="random-shift padding in pixels (4)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--holdout", type=float, default=0.2, help="share of held-out episodes")
    p.add_argument(
        "--min-precision",
        type=float,
        default=None,
        metavar="P",
        help="choose the lowest threshold with validation precision >= P (default: best F1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="run name (default classifier-<encoder>)")
    p.add_argument("--storage", default="flywheel-runs", help="where runs and checkpoints go")
    p.add_argument("--max-failures", type=int, default=2)
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-classifier") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = TrainConfig(
        **{k: v for k, v in vars(args).items() if k != "no_mlflow"}, mlflow=not args.no_mlflow
    )
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    if cfg.labels is None and success_csv_path(cfg.dataset).exists():
        print(f"note: labeled from next.reward; {success_csv_path(cfg.dataset)} exists (--labels)")
    if result.unlabeled:
        print(f"note: {len(result.unlabeled)} episodes are not in {cfg.labels} and were not used")
    m = result.metrics
    if m.get("resumed_from") == result.step:
        print(f"{cfg.run_name} is already trained to step {result.step} (--steps {cfg.steps})")
    else:
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
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.train_classifier"))
