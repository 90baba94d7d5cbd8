"""`flywheel demo`: the flywheel end to end on a small dataset, on a local Ray cluster."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import label
from pipelines.dataset import DatasetError
from pipelines.progress_dataset import make_progress_dataset


def main(argv: Sequence[str] | None = None, prog: str = "flywheel demo") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--out", default="flywheel-demo", help="output folder (default flywheel-demo)")
    p.add_argument("--episodes", type=int, default=40, help="episodes to generate (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    dataset = out / "dataset"
    if dataset.exists():
        shutil.rmtree(dataset)
    print(f"[1/2] generating {args.episodes} progress-only episodes in {dataset}")
    make_progress_dataset(dataset, episodes=args.episodes, seed=args.seed)
    print("[2/2] Stage 0: labeling (binary, top 30% positive per stage, 2 stages)")
    cfg = label.LabelConfig(
        dataset=str(dataset),
        threshold=30.0,
        stage_nums=2,
        ray_address=args.ray_address,
        mlflow=not args.no_mlflow,
    )
    try:
        result = label.run(cfg, out=lambda *a: None)
    except DatasetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"  labeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s)")
    for i, text in enumerate(result.task_texts):
        print(f"  task_index={i} {text!r}: {result.counts[i]} frames")
    print(f"Results: {dataset.resolve()}")
    if result.mlflow_run:
        print(result.mlflow_run)
    return 0


if __name__ == "__main__":
    from pipelines.cluster import exit_process

    exit_process(main(prog="python -m pipelines.demo"))
