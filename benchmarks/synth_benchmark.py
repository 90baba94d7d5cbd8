"""Benchmark of `flywheel synth` (not a test), and of the label signal in what it makes.

1. `flywheel synth OUT --episodes N` end to end as a user runs it (a fresh process: Ray
   start-up included), and the same episodes rolled out and written in one process without Ray
   (the `rollout_episode` / `write_tables` functions the Ray tasks run, called in a loop).
2. On the Ray-made dataset: the spread of successful episode lengths, the failures, and
   `flywheel label` at the default settings and at top 30 %: the share of positive frames per
   controller and per data_type.

    python benchmarks/synth_benchmark.py [--episodes 200] [--seed 0]

Prints a table and writes benchmarks/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import labeling, synthesis  # noqa: E402
from pipelines.dataset import LeRobotDataset  # noqa: E402


def one_process(cfg: synthesis.SynthConfig) -> float:
    """The same work as `flywheel synth`, sequentially in this process (no Ray)."""
    t = time.perf_counter()
    plans = synthesis.plan_episodes(cfg, synthesis.parse_mix(cfg.mix))
    root = Path(cfg.out)
    root.mkdir(parents=True)
    metas, tables = [], []
    for plan in plans:
        meta, table = synthesis.rollout_episode(plan, cfg, str(root))
        metas.append(meta)
        tables.append(table)
    firsts = np.r_[0, np.cumsum([m["length"] for m in metas])[:-1]]
    synthesis.write_tables(
        str(root),
        [(m["episode_index"], int(f)) for m, f in zip(metas, firsts, strict=True)],
        tables,
    )
    return time.perf_counter() - t


def label_shares(dataset: Path, episodes: list[dict], threshold: float, chunk: int) -> dict:
    work = dataset.parent / "labeled"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(dataset, work)
    labeling.run(
        labeling.LabelConfig(
            dataset=str(work), threshold=threshold, chunk_size=chunk, mlflow=False
        ),
        out=lambda *a: None,
    )
    ds = LeRobotDataset(work)
    by: dict[str, list] = {}
    for ep in episodes:
        t = ds.read_episode(ep["episode_index"], ["task_index", "data_type"])
        ti = t["task_index"].to_numpy()
        kinds = np.array(t["data_type"].to_pylist())
        by.setdefault(ep["controller"], []).append(ti)
        for kind in np.unique(kinds):
            by.setdefault(f"data_type={kind}", []).append(ti[kinds == kind])
    shutil.rmtree(work)
    return {k: round(float(np.concatenate(v).mean()), 3) for k, v in sorted(by.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flywheel-synth-bench-"))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)

    t = time.perf_counter()
    out = work / "ray"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "synth",
            str(out),
            "--episodes",
            str(args.episodes),
            "--seed",
            str(args.seed),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    ray_wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(proc.stderr)
    print(proc.stdout)
    cfg = synthesis.SynthConfig(out=str(work / "single"), episodes=args.episodes, seed=args.seed)
    single = one_process(cfg)

    ds = LeRobotDataset(out)
    frames = int(ds.info["total_frames"])
    plans = synthesis.plan_episodes(cfg, synthesis.parse_mix(cfg.mix))
    episodes = []
    for plan in plans:
        t = ds.read_episode(plan.index, ["next.reward"])
        episodes.append(
            {
                "episode_index": plan.index,
                "controller": plan.controller,
                "supervised": plan.supervised,
                "length": t.num_rows,
                "success": bool(t["next.reward"].to_numpy().sum() > 0),
            }
        )
    ok = [e["length"] for e in episodes if e["success"]]
    result = {
        "episodes": args.episodes,
        "frames": frames,
        "cpus": os.cpu_count(),
        "ray_end_to_end_s": round(ray_wall, 2),
        "ray_episodes_per_s": round(args.episodes / ray_wall, 2),
        "ray_frames_per_s": round(frames / ray_wall, 1),
        "one_process_s": round(single, 2),
        "one_process_episodes_per_s": round(args.episodes / single, 2),
        "one_process_frames_per_s": round(frames / single, 1),
        "speedup": round(single / ray_wall, 2),
        "successful_lengths": {
            "min": min(ok),
            "max": max(ok),
            "p10": float(np.percentile(ok, 10)),
            "p90": float(np.percentile(ok, 90)),
        },
        "failed_episodes": sum(not e["success"] for e in episodes),
        "positive_share_default": label_shares(out, episodes, 70, 50),
        "positive_share_top30": label_shares(out, episodes, 30, 50),
        "positive_share_top30_chunk10": label_shares(out, episodes, 30, 10),
    }
    print(json.dumps(result, indent=2))
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "synth.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
