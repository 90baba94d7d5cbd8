"""Speed of the advantage estimator's training and inference (not a test).

Training: `flywheel train-estimator` samples/s (pairs per second over all workers, measured
over the last checkpoint interval) with 1 and with 2 workers.

Inference, frames/s from decoding to written parquet, on the same dataset and checkpoint:

* `flywheel estimate` as a user runs it (a fresh process: Ray start-up included);
* the same pass in a process where Ray is already up;
* the reference's way: one episode at a time in one process, the whole episode decoded into
  memory, the model run on every query (value and relative pairs) in batches, then written;
* one episode at a time in one process, but encoding every frame once (what each Flywheel
  replica computes), to separate what the pipeline's parallelism buys from what encoding each
  frame once buys.

    python benchmarks/estimator_benchmark.py [--episodes 200] [--train-steps 100]

Writes benchmarks/results/estimator.json.
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

from pipelines import synth  # noqa: E402
from pipelines.dataset import LeRobotDataset, write_parquet  # noqa: E402
from pipelines.estimator import inference as estimate  # noqa: E402
from pipelines.estimator import training as train_estimator  # noqa: E402
from pipelines.estimator.config import EstimatorTrainConfig  # noqa: E402
from pipelines.estimator.data import advantages, lookahead  # noqa: E402
from pipelines.estimator.model import load_checkpoint  # noqa: E402
from pipelines.vision.images import resize  # noqa: E402


def reference_loop(ds: LeRobotDataset, checkpoint: str, out_dir: str, batch: int = 64) -> int:
    """One episode at a time, every query through the whole model (the reference's way)."""
    import pyarrow as pa
    import torch

    from pipelines.dataset import episode_data_path, read_columns

    model, cfg, _ = load_checkpoint(checkpoint)
    frames = 0
    for e in ds.episode_indices:
        images = np.stack(
            [
                np.stack([resize(f, cfg.image_size) for f in ds.iter_camera_frames(e, k)])
                for k in cfg.cameras
            ],
            axis=1,
        )
        table = read_columns(ds.data_file(e))
        state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
        n = len(state)
        f = lookahead(n)
        idx = np.arange(n)
        pairs = {"value": (np.zeros(n, int), idx), "relative": (idx, f)}
        out = {}
        with torch.no_grad():
            for name, (h, c) in pairs.items():
                vals = []
                for a in range(0, n, batch):
                    hh, cc = h[a : a + batch], c[a : a + batch]
                    im = torch.from_numpy(np.stack([images[hh], images[cc]], 1))
                    st = torch.from_numpy(np.stack([state[hh], state[cc]], 1))
                    vals.append(model(im, st).numpy())
                out[name] = np.concatenate(vals)
        cols = advantages(out["value"], out["relative"])
        for name, values in cols.items():
            table = table.append_column(name, pa.array(values, pa.float32()))
        write_parquet(episode_data_path(ds.root, e, out_dir, ds.chunks_size), table)
        frames += n
    return frames


def reuse_loop(ds: LeRobotDataset, checkpoint: str, out_dir: str) -> int:
    """One episode at a time, each frame encoded once (Flywheel's computation, no Ray)."""
    model, cfg, _ = load_checkpoint(checkpoint)
    frames = 0
    for e in ds.episode_indices:
        images = np.concatenate(
            [b["images"] for b in estimate.episode_frames(ds, e, cfg.cameras, cfg.image_size)]
        )
        feats = estimate.encode_frames(model, images, 64)
        estimate.write_output_file(
            ds,
            ds.data_file(e),
            ds.data_file(e, out_dir),
            lambda ep, f, state: estimate.progress_columns(model, ep, f, state),
            {e: feats},
        )
        frames += len(images)
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--keep", default=None)
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="flywheel-estimator-bench-"))
    root = work / "dataset"
    from pipelines.runtime.cluster import connect

    connect(None)
    if not (root / "meta" / "info.json").exists():
        synth.run(synth.SynthConfig(out=str(root), episodes=args.episodes, seed=0))
    ds = LeRobotDataset(root)
    frames_total = int(ds.info["total_frames"])

    training = {}
    checkpoint = None
    for workers in (1, 2):
        r = train_estimator.run(
            EstimatorTrainConfig.from_flags(
                dataset=str(root),
                workers=workers,
                steps=args.train_steps,
                batch_size=32,
                checkpoint_every=max(1, args.train_steps // 2),
                storage=str(work / "runs"),
                name=f"speed-{workers}",
                mlflow=False,
                holdout=0.2,
            )
        )
        training[f"{workers}_workers_samples_per_s"] = round(r.metrics["samples_per_s"], 1)
        checkpoint = r.checkpoint
    out_dir = estimate.output_dir("kai0", args.train_steps)

    def clear():
        shutil.rmtree(root / out_dir, ignore_errors=True)

    clear()
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    t = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "estimate", str(root), "--checkpoint", checkpoint],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    e2e = time.time() - t
    if proc.returncode:
        raise SystemExit(proc.stderr)
    clear()
    t = time.time()
    estimate.run(estimate.EstimateConfig(dataset=str(root), checkpoint=checkpoint))
    warm = time.time() - t
    clear()
    t = time.time()
    reference_loop(ds, checkpoint, out_dir)
    reference = time.time() - t
    clear()
    t = time.time()
    reuse_loop(ds, checkpoint, out_dir)
    reuse = time.time() - t
    clear()

    result = {
        "episodes": args.episodes,
        "frames": frames_total,
        "cpus": os.cpu_count(),
        "training": training,
        "inference_frames_per_s": {
            "flywheel_estimate_end_to_end": round(frames_total / e2e, 1),
            "flywheel_estimate_ray_up": round(frames_total / warm, 1),
            "reference_loop_one_process": round(frames_total / reference, 1),
            "encode_once_loop_one_process": round(frames_total / reuse, 1),
        },
        "inference_seconds": {
            "end_to_end": round(e2e, 1),
            "ray_up": round(warm, 1),
            "reference_loop": round(reference, 1),
            "encode_once_loop": round(reuse, 1),
        },
        "speedup_vs_reference_loop": {
            "end_to_end": round(reference / e2e, 2),
            "ray_up": round(reference / warm, 2),
        },
        "speedup_vs_encode_once_loop": {
            "end_to_end": round(reuse / e2e, 2),
            "ray_up": round(reuse / warm, 2),
        },
    }
    print(json.dumps(result, indent=2))
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "estimator.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
