"""Quality bar of the advantage estimator on simulated data (not a test).

1. `flywheel synth` a dataset (default 200 episodes, default mix);
2. `flywheel train-estimator --variant kai0 --workers 2` for `--steps` steps (20 % of the
   episodes held out); the CPU-minutes are measured (wall time x workers);
3. `flywheel estimate` on the dataset;
4. on the held-out episodes: the Spearman correlation between `absolute_value` and the true
   `stage_progress_gt`, and the agreement of `flywheel label --advantage-source
   absolute_advantage --threshold 30` on the estimator's output with `flywheel label
   --threshold 30` on the true progress.

    python benchmarks/estimator_quality.py [--episodes 200] [--steps 600] [--keep DIR]

Prints the figures and writes benchmarks/results/estimator_quality.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import label, synth  # noqa: E402
from pipelines.dataset import LeRobotDataset, episode_data_path, read_columns  # noqa: E402
from pipelines.estimator import inference as estimate  # noqa: E402
from pipelines.estimator import training as train_estimator  # noqa: E402
from pipelines.estimator.config import EstimatorTrainConfig  # noqa: E402
from pipelines.runtime.schedule import split_episodes  # noqa: E402


def labels_of(root: Path, data_dir: str, episodes: list[int]) -> np.ndarray:
    ds = LeRobotDataset(root)
    return np.concatenate(
        [
            read_columns(episode_data_path(root, e, data_dir, ds.chunks_size), ["task_index"])[
                "task_index"
            ].to_numpy()
            for e in episodes
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None)
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="flywheel-estimator-quality-"))
    root = work / "dataset"
    from scipy.stats import spearmanr

    from pipelines.runtime.cluster import connect

    connect(None)
    if not (root / "meta" / "info.json").exists():
        synth.run(synth.SynthConfig(out=str(root), episodes=args.episodes, seed=args.seed))
    ds = LeRobotDataset(root)
    train, held = split_episodes(ds.episode_indices, 0.2, args.seed)

    t = time.time()
    trained = train_estimator.run(
        EstimatorTrainConfig.from_flags(
            dataset=str(root),
            variant="kai0",
            workers=2,
            steps=args.steps,
            batch_size=args.batch_size,
            holdout=0.2,
            seed=args.seed,
            storage=str(work / "runs"),
            name=f"quality-{args.steps}",
            mlflow=False,
        )
    )
    train_wall = time.time() - t
    t = time.time()
    est = estimate.run(estimate.EstimateConfig(dataset=str(root), checkpoint=trained.checkpoint))
    estimate_wall = time.time() - t
    out_dir = est.out_dir.name

    values, truth = [], []
    for e in held:
        tb = read_columns(
            episode_data_path(root, e, out_dir, ds.chunks_size),
            ["absolute_value", "stage_progress_gt"],
        )
        values.append(tb["absolute_value"].to_numpy())
        truth.append(tb["stage_progress_gt"].to_numpy())
    spearman = float(spearmanr(np.concatenate(values), np.concatenate(truth)).statistic)

    quiet = dict(mlflow=False)
    label.run(label.LabelConfig(dataset=str(root), threshold=30, **quiet), out=lambda *a: None)
    true_labels = labels_of(root, "data", held)
    label.run(
        label.LabelConfig(
            dataset=str(root),
            threshold=30,
            data_dir=out_dir,
            advantage_source="absolute_advantage",
            **quiet,
        ),
        out=lambda *a: None,
    )
    est_labels = labels_of(root, out_dir, held)
    agreement = float((true_labels == est_labels).mean())
    result = {
        "episodes": args.episodes,
        "held_out_episodes": len(held),
        "held_out_frames": int(len(true_labels)),
        "steps": args.steps,
        "batch_size_per_worker": args.batch_size,
        "workers": 2,
        "train_wall_s": round(train_wall, 1),
        "train_cpu_minutes": round(train_wall * 2 / 60, 2),
        "estimate_wall_s": round(estimate_wall, 1),
        "train_eval_spearman": trained.metrics.get("eval_spearman"),
        "spearman_absolute_value_vs_stage_progress_gt": round(spearman, 4),
        "label_agreement_threshold30": round(agreement, 4),
        "positive_share_true": round(float(true_labels.mean()), 3),
        "positive_share_estimated": round(float(est_labels.mean()), 3),
    }
    print(json.dumps(result, indent=2))
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "estimator_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
