"""HIL-SERL speed and size: learner updates/s per encoder mode, collector steps/s, bytes shipped
per episode, replay memory per 100k transitions, and 1 / 2 / 4 collectors feeding one learner.

    python benchmarks/hilserl_benchmark.py [--quick] [--encoder CKPT] [--out FILE]

* updates/s: `DrQV2Agent.update` on batches drawn from a filled replay buffer (what the learner
  does), batch 256, 64 x 64 images (the frozen estimator's size), each mode's network: `drqv2`
  (trainable encoder over both cameras, frame stack 1 and 3), `frozen` (256 features per frame:
  an estimator's encoder; 512: a classifier's), hidden 256 and 1024 (DrQ-v2's), 1 torch thread
  and all of them. Medians of repeats, after warm-up.
* collector steps/s: `SimRollout` episodes, the simulated operator and a (random) policy acting
  through the frozen encoder, in one process (what a sim collector does), and the emulated
  SO-101 through its driver at its control rate (10 fps: real time).
* bytes per episode: what a collector ships (`Episode.nbytes`, and pickled) per mode.
* replay memory: a buffer's arrays per 100k frames for each observation kind, and the resident
  memory measured after filling 20k frames.
* scale: `flywheel hilserl` runs of `--steps` env steps with 1, 2 and 4 collectors, the learner
  free-running (`--updates-per-step 0`): env steps/s collected, learner updates/s.

The figures depend on the machine's load: the script records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMS = ["observation.images.front", "observation.images.wrist"]


def load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


def make_batch(rng, mode: str, n: int, size: int, stack: int, fdim: int) -> dict:
    def obs():
        o = {"observation.state": rng.normal(size=(n, stack, 6)).astype(np.float32)}
        if mode == "drqv2":
            for k in CAMS:
                o[k] = rng.integers(0, 255, (n, stack, size, size, 3), dtype=np.uint8)
        else:
            o["features"] = rng.normal(size=(n, stack, fdim)).astype(np.float16)
        return o

    return {
        "obs": obs(),
        "next_obs": obs(),
        "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        "reward": (rng.random(n) < 0.05).astype(np.float32),
        "discount": np.full(n, 0.97, np.float32),
        "intervention": rng.random(n) < 0.3,
        "demo": np.zeros(n, bool),
    }


def updates_per_s(mode, hidden, stack, fdim, threads, batch=256, size=64, repeats=3, seconds=8):
    import torch

    from pipelines.rl.agent import DrQV2Agent
    from pipelines.rl.config import AgentConfig

    torch.set_num_threads(threads)
    cfg = AgentConfig(
        cameras=CAMS,
        encoder=mode,
        image_size=size,
        frame_stack=stack,
        frozen_dim=fdim if mode == "frozen" else 0,
        hidden_dim=hidden,
    )
    agent = DrQV2Agent(cfg)
    rng = np.random.default_rng(0)
    batches = [make_batch(rng, mode, batch, size, stack, fdim) for _ in range(2)]
    agent.update([batches[0]], 0)  # warm-up
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            agent.update([batches[n % 2]], 1000)
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    return {
        "mode": mode,
        "hidden": hidden,
        "frame_stack": stack,
        "features": fdim if mode == "frozen" else None,
        "batch": batch,
        "image_size": size,
        "threads": threads,
        "updates_per_s": round(statistics.median(rates), 2),
        "all": [round(x, 2) for x in rates],
        "load": load(),
    }


def collector_rate(encoder_path: str | None, steps: int = 2000) -> dict:
    import torch

    from actors.hilserl.config import CollectorConfig, EpisodeSpec
    from actors.hilserl.sim_rollout import SimRollout
    from pipelines.rl.features import load_frozen_encoder

    torch.set_num_threads(1)
    encoder = load_frozen_encoder(encoder_path) if encoder_path else None
    size = encoder.image_size if encoder else 64
    rng = np.random.default_rng(0)
    out = {}
    for keep in (False, True):
        spec = EpisodeSpec(CAMS, image_size=size, keep_images=keep)
        rollout = SimRollout(CollectorConfig(), spec, encoder)
        done, episodes, shipped, pickled = 0, 0, [], []
        t0, cpu0 = time.perf_counter(), time.process_time()
        while done < steps:
            ep = rollout.episode(lambda o: rng.uniform(-1, 1, 4).astype(np.float32), episodes)
            done += len(ep)
            episodes += 1
            shipped.append(ep.nbytes() / len(ep))
            pickled.append(len(pickle.dumps(ep, protocol=5)) / len(ep))
        wall = time.perf_counter() - t0
        name = "frozen+images" if keep else ("frozen" if encoder else "images")
        out[name] = {
            "steps_per_s": round(done / wall, 1),
            "cpu_s_per_1k_steps": round((time.process_time() - cpu0) / done * 1000, 2),
            "bytes_per_step": round(statistics.mean(shipped)),
            "pickled_bytes_per_step": round(statistics.mean(pickled)),
            "bytes_per_50_step_episode": round(statistics.mean(pickled) * 50),
            "episodes": episodes,
            "image_size": size,
            "load": load(),
        }
    return out


def rss() -> int:
    """This process's resident memory (bytes), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def replay_memory(fill: int = 20_000) -> dict:
    from pipelines.rl.replay import Episode, ReplayBuffer

    kinds = {
        "images 2 x 64x64 uint8": {k: ((64, 64, 3), "uint8") for k in CAMS},
        "images 2 x 128x128 uint8": {k: ((128, 128, 3), "uint8") for k in CAMS},
        "frozen estimator features (256 x float16)": {"features": ((256,), "float16")},
        "frozen classifier features (512 x float16)": {"features": ((512,), "float16")},
    }
    out = {}
    for name, spec in kinds.items():
        spec = {**spec, "observation.state": ((6,), "float32")}
        per_frame = ReplayBuffer(1000, spec, 4).bytes_per_frame()
        row = {
            "bytes_per_frame": per_frame,
            "gb_per_100k_frames": round(per_frame * 100_000 / 1e9, 3),
            # 50-step episodes: 51 frames per 50 transitions
            "gb_per_100k_transitions": round(per_frame * 100_000 * 51 / 50 / 1e9, 3),
        }
        if "128" not in name:
            before = rss()
            buf = ReplayBuffer(fill + 100, spec, 4)
            rng = np.random.default_rng(0)
            t = 50
            for _ in range(fill // (t + 1)):
                obs = {
                    k: rng.integers(0, 255, (t + 1, *s), dtype=np.uint8)
                    if d == "uint8"
                    else rng.normal(size=(t + 1, *s)).astype(d)
                    for k, (s, d) in spec.items()
                }
                buf.add(
                    Episode(
                        obs,
                        np.zeros((t, 4), np.float32),
                        np.zeros(t, np.float32),
                        False,
                        np.zeros(t, bool),
                        np.zeros(t, bool),
                        {},
                    )  # fmt: skip
                )
            grown = rss() - before
            row["measured_rss_gb_per_100k_frames"] = round(grown / buf.frames * 100_000 / 1e9, 3)
            del buf
        out[name] = row
    # LeRobot's float32 state + next_state for two 128 x 128 cameras, for comparison
    out["lerobot float32 obs + next_obs, 2 x 128x128"] = {
        "gb_per_100k_transitions": round(2 * 2 * 128 * 128 * 3 * 4 * 100_000 / 1e9, 1)
    }
    return out


def scale(encoder_path: str, steps: int, collectors=(1, 2, 4)) -> list[dict]:
    from actors import hilserl

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in collectors:
            cfg = hilserl.HilserlConfig.from_flags(
                encoder=f"frozen:{encoder_path}",
                steps=steps,
                collectors=n,
                updates_per_step=0.0,
                record=False,
                mlflow=False,
                storage=d,
                name=f"scale{n}",
                quiet=True,
            )
            t0 = time.perf_counter()
            result = hilserl.run(cfg)
            wall = time.perf_counter() - t0
            s = result.status
            episodes = result.history["episodes"]
            first = episodes[0]["wall_s"] if episodes else 0.0
            span = max(episodes[-1]["wall_s"] - first, 1e-9) if episodes else float("nan")
            rows.append(
                {
                    "collectors": n,
                    "env_steps": s["env_steps"],
                    "env_steps_per_s": round((s["env_steps"] - episodes[0]["length"]) / span, 1),
                    "learner_updates": s["learner_steps"],
                    "learner_updates_per_s": round(s["learner_steps"] / span, 1),
                    "wall_s": round(wall, 1),
                    "load": load(),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default=None, help="a frozen encoder checkpoint (estimator)")
    p.add_argument("--quick", action="store_true", help="a short smoke run of every part")
    p.add_argument("--scale-steps", type=int, default=3000)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hilserl.json"))
    args = p.parse_args(argv)
    import torch

    quick = args.quick
    seconds = 2 if quick else 8
    repeats = 1 if quick else 3
    result = {"cpus": os.cpu_count(), "torch": torch.__version__, "load_start": load()}
    grid = [
        ("frozen", 256, 1, 256),
        ("frozen", 1024, 1, 256),
        ("frozen", 256, 1, 512),
        ("drqv2", 256, 1, 0),
        ("drqv2", 1024, 3, 0),
    ]
    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        for mode, hidden, stack, fdim in grid:
            if quick and (hidden == 1024 or threads > 1):
                continue
            row = updates_per_s(
                mode, hidden, stack, fdim, threads, repeats=repeats, seconds=seconds
            )
            rows.append(row)
            print(rows[-1], flush=True)
    result["updates"] = rows
    result["memory"] = replay_memory(2_000 if quick else 20_000)
    print(json.dumps(result["memory"], indent=1), flush=True)
    if args.encoder:
        result["collector"] = collector_rate(args.encoder, 300 if quick else 3000)
        print(json.dumps(result["collector"], indent=1), flush=True)
        result["scale"] = scale(args.encoder, 300 if quick else args.scale_steps)
    result["load_end"] = load()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from pipelines.dataset import atomic_write_json

    atomic_write_json(out, result)
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
