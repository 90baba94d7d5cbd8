"""`flywheel demo`: the flywheel end to end on a small simulated dataset, on a local Ray cluster.

1. synthesize SO-101 episodes in the simulator (`flywheel synth`);
2. Stage 0: label them from the simulator's progress (`flywheel label`) and show where the
   positive labels went.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines import label, synth
from pipelines.cluster import ClusterError
from pipelines.dataset import DatasetError, LeRobotDataset


def positive_share(dataset: Path, episodes: list[dict]) -> dict[str, float]:
    """Share of frames labeled positive, per controller that made the episodes."""
    ds = LeRobotDataset(dataset)
    by: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        ti = ds.read_episode(ep["episode_index"], ["task_index"])["task_index"].to_numpy()
        by.setdefault(ep["controller"], []).append(ti % 2)
    return {name: float(np.concatenate(v).mean()) for name, v in sorted(by.items())}


def main(argv: Sequence[str] | None = None, prog: str = "flywheel demo") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="flywheel-demo", help="output folder (default flywheel-demo)")
    p.add_argument("--episodes", type=int, default=40, help="episodes to simulate (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ray-address", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    dataset = out / "dataset"
    try:
        if dataset.exists():  # the demo's own output from an earlier run
            shutil.rmtree(dataset)
        print(f"[1/2] synthesizing {args.episodes} SO-101 episodes in the simulator -> {dataset}")
        made = synth.run(
            synth.SynthConfig(
                out=str(dataset),
                episodes=args.episodes,
                seed=args.seed,
                ray_address=args.ray_address,
            )
        )
        n = len(made.episodes)
        print(f"  {n} episodes, {made.frames} frames in {made.seconds:.1f} s")
        for line in synth.summary_lines(made):
            print(line)

        print("[2/2] Stage 0: labeling from progress (binary, top 30% positive, chunk 10)")
        cfg = label.LabelConfig(
            dataset=str(dataset),
            threshold=30.0,
            chunk_size=10,
            ray_address=args.ray_address,
            mlflow=not args.no_mlflow,
        )
        result = label.run(cfg, out=lambda *a: None)
    except (DatasetError, ClusterError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"  labeled {result.frames} frames in {result.files} files ({result.seconds:.1f} s)")
    for i, text in enumerate(result.task_texts):
        print(f"  task_index={i} {text!r}: {result.counts[i]} frames")
    shares = positive_share(dataset, made.episodes)
    print("  positive share by controller: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    print(f"Results: {dataset.resolve()}")
    if result.mlflow_run:
        print(result.mlflow_run)
    return 0


if __name__ == "__main__":
    from pipelines.cluster import exit_process

    exit_process(main(prog="python -m pipelines.demo"))
