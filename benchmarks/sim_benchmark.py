"""Benchmark of the embedded SO-101 simulator (not a test).

Steps ``SO101Env`` with the expert controller acting, on one core (process pinned to one CPU,
OpenCV and BLAS single-threaded), for each action mode and for: both cameras at 128x128, no
images (``render_images=False``), and both cameras at 224x224. Episodes run back to back
(reach_grasp, seeds 0, 1, ...); resets are included in the env time.

    python benchmarks/sim_benchmark.py [--steps 2000] [--repeats 3] [--task reach_grasp]

Prints a table and writes benchmarks/results/sim.json. Figures (the median of ``repeats`` runs;
the machine may be shared): steps/s of the whole loop (env + controller) and of the env alone,
and the cost of one camera image.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.simulator.controllers import ExpertController  # noqa: E402
from pipelines.simulator.env import SO101Env  # noqa: E402
from pipelines.simulator.tasks import DEFAULT_TASK, TASK_NAMES  # noqa: E402

CONFIGS = (  # (label, image_size, render_images)
    ("images 128x128", 128, True),
    ("no images", 128, False),
    ("images 224x224", 224, True),
)


def pin_to_one_core() -> int | None:
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    return None


def run(task: str, action_mode: str, image_size: int, render_images: bool, steps: int) -> dict:
    env = SO101Env(task, action_mode=action_mode, image_size=image_size,
                   render_images=render_images)  # fmt: skip
    expert = ExpertController(env)
    env_time = controller_time = 0.0
    done_steps = episodes = successes = 0
    warmup = 100
    seed = 0
    while done_steps < steps + warmup:
        t0 = time.perf_counter()
        obs, info = env.reset(seed=seed)
        t1 = time.perf_counter()
        expert.reset(seed)
        if done_steps >= warmup:
            env_time += t1 - t0
        seed += 1
        terminated = truncated = False
        while not (terminated or truncated):
            t0 = time.perf_counter()
            action = expert(obs, info)
            t1 = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(action)
            t2 = time.perf_counter()
            if done_steps >= warmup:
                controller_time += t1 - t0
                env_time += t2 - t1
            done_steps += 1
        if done_steps > warmup:
            episodes += 1
            successes += bool(info["success"])
    measured = done_steps - warmup
    render_us = None
    if render_images:
        renderer, world = env.renderer, env.world
        t0 = time.perf_counter()
        for _ in range(500):
            renderer.render_front(world)
            renderer.render_wrist(world)
        render_us = (time.perf_counter() - t0) / 1000 * 1e6
    return {
        "action_mode": action_mode,
        "image_size": image_size if render_images else None,
        "render_images": render_images,
        "steps": measured,
        "episodes": episodes,
        "success_rate": round(successes / max(episodes, 1), 3),
        "steps_per_s": round(measured / (env_time + controller_time), 1),
        "env_steps_per_s": round(measured / env_time, 1),
        "env_step_us": round(env_time / measured * 1e6, 1),
        "controller_us": round(controller_time / measured * 1e6, 1),
        "image_render_us": None if render_us is None else round(render_us, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="measured steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per config (median kept)")
    parser.add_argument("--task", default=DEFAULT_TASK, choices=TASK_NAMES)
    args = parser.parse_args()
    core = pin_to_one_core()

    rows = []
    print(f"{'action mode':<10} {'config':<16} {'steps/s':>8} {'env steps/s':>12} "
          f"{'env us':>7} {'ctrl us':>8} {'image us':>9}")  # fmt: skip
    for action_mode in ("joint", "ee_delta"):
        for label, size, render_images in CONFIGS:
            runs = [
                run(args.task, action_mode, size, render_images, args.steps)
                for _ in range(args.repeats)
            ]
            runs.sort(key=lambda r: r["steps_per_s"])
            row = runs[len(runs) // 2]
            row["config"] = label
            row["all_steps_per_s"] = [r["steps_per_s"] for r in runs]
            rows.append(row)
            image = "-" if row["image_render_us"] is None else f"{row['image_render_us']:.0f}"
            print(f"{action_mode:<10} {label:<16} {row['steps_per_s']:>8.0f} "
                  f"{row['env_steps_per_s']:>12.0f} {row['env_step_us']:>7.0f} "
                  f"{row['controller_us']:>8.0f} {image:>9}")  # fmt: skip

    result = {
        "task": args.task,
        "pinned_core": core,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "results": rows,
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'sim.json'}")


if __name__ == "__main__":
    main()
