"""Speed of Stage 3 (not a test): train-policy samples/s and eval-policy episodes/s.

Training: `flywheel train-policy` (AWBC, defaults but `--steps`) with 1 and with 2 DDP
workers on the same dataset; samples/s over all workers, measured over the last checkpoint
interval (decoding and Ray start-up excluded), and the run's CPU-seconds.

Evaluation: `flywheel eval-policy` of the trained policy on the same seeds as Ray tasks and
in one process (`--one-process`); episodes/s and environment steps/s, from the command's start
to its report (policy loading and, for Ray, task start-up included; Ray itself already up).

    python benchmarks/policy_benchmark.py [--episodes 200] [--train-steps 300]
        [--eval-episodes 100] [--dataset DIR]

Writes benchmarks/results/policy.json. Small settings prove it runs:
    python benchmarks/policy_benchmark.py --episodes 12 --train-steps 20 --eval-episodes 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import evaluation as evaluate  # noqa: E402
from pipelines import label, synth  # noqa: E402
from pipelines.policy import training as train  # noqa: E402
from pipelines.policy.config import PolicyTrainConfig  # noqa: E402

MIX = "expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--dataset", default=None, help="a labeled dataset to reuse")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "policy.json"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flywheel-policy-benchmark-"))
    from pipelines.runtime.cluster import connect

    connect(None)
    root = Path(args.dataset) if args.dataset else work / "dataset"
    if not args.dataset:
        synth.run(synth.SynthConfig(str(root), episodes=args.episodes, seed=0, mix=MIX))
        label.run(label.LabelConfig(str(root), threshold=30, mlflow=False), out=lambda *a: None)
    result: dict = {"episodes": args.episodes, "train_steps": args.train_steps, "training": {}}
    checkpoint = None
    for workers in (1, 2):
        cfg = PolicyTrainConfig.from_flags(
            dataset=str(root),
            workers=workers,
            steps=args.train_steps,
            checkpoint_every=max(1, args.train_steps // 2),
            storage=str(work / "runs"),
            name=f"bench-{workers}",
            mlflow=False,
        )
        t = time.time()
        trained = train.run(cfg)
        m = trained.metrics
        result["training"][f"{workers}_workers"] = {
            "samples_per_s": round(m["samples_per_s"], 1),
            "batch_per_worker": cfg.run.batch_size,
            "cpu_seconds": round(m["cpu_seconds"], 1),
            "wall_s": round(time.time() - t, 1),
            "decode_s": round(m["decode_s"], 1),
        }
        print(f"train-policy, {workers} worker(s): {m['samples_per_s']:.0f} samples/s", flush=True)
        checkpoint = trained.checkpoint
    result["evaluation"] = {}
    for mode, one in (("ray", False), ("one_process", True)):
        cfg = evaluate.EvalConfig(
            checkpoint, episodes=args.eval_episodes, one_process=one, mlflow=False, videos=0
        )
        t = time.time()
        out = evaluate.run(cfg)
        wall = time.time() - t
        steps = sum(o.steps for o in out.arms[0].outcomes)
        result["evaluation"][mode] = {
            "episodes_per_s": round(args.eval_episodes / wall, 2),
            "env_steps_per_s": round(steps / wall, 1),
            "wall_s": round(wall, 1),
            "success_rate": out.arms[0].summary()["success_rate"],
        }
        print(f"eval-policy, {mode}: {args.eval_episodes / wall:.2f} episodes/s", flush=True)
    ev = result["evaluation"]
    result["evaluation"]["ray_speedup"] = round(
        ev["ray"]["episodes_per_s"] / ev["one_process"]["episodes_per_s"], 2
    )
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
