"""Teleoperation loop on Ray against the emulated arms (not a test).

`TeleopSession` at 30 Hz for `--seconds`: every tick reads the follower (Ray actor, real SDK,
emulated servos), the leader and two simulated cameras, records the frame and commands the
follower. Reports the achieved rate, the period jitter |period - 1/30 s| (p50, p99, max) and the
late ticks; writes benchmarks/results/teleop.json.

    python benchmarks/teleop_benchmark.py [--seconds 20] [--fps 30] [--vcodec av1|h264|mpeg4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--vcodec", default=None, help="video codec recorded (default: av1)")
    args = p.parse_args()

    import ray

    from actors.arm import JOINTS, follower_actor, leader_actor
    from actors.camera import RobotCamera
    from actors.emulated_robot import EMULATED_CALIBRATION, EmulatedSO101
    from actors.teleop import TeleopSession
    from pipelines.dataset import EpisodeRecorder
    from pipelines.runtime.cluster import connect

    connect(None)
    sim = ray.remote(EmulatedSO101).remote(seed=0, image_size=128, hand="expert")
    ports = ray.get(sim.ports.remote())
    follower = follower_actor().remote(ports["follower"], EMULATED_CALIBRATION)
    leader = leader_actor().remote(ports["leader"], EMULATED_CALIBRATION)
    keys = ("observation.images.front", "observation.images.wrist")
    cameras = {k: ray.remote(RobotCamera).remote(sim, k) for k in keys}
    # actors start on their first call: start them all before the clock runs
    ray.get(
        [c.latest.remote() for c in cameras.values()]
        + [follower.read.remote(), leader.read.remote()]
    )
    with tempfile.TemporaryDirectory() as d:
        recorder = EpisodeRecorder(
            Path(d) / "ds",
            fps=args.fps,
            task="benchmark",
            joint_names=JOINTS,
            cameras={k: (128, 128) for k in keys},
            vcodec=args.vcodec,
        )
        session = TeleopSession(
            follower, leader, cameras, recorder, fps=args.fps, episode_time_s=args.seconds
        )
        (outcome,) = session.run(1)
    periods = np.array(outcome.periods_ms)
    jitter = np.abs(periods - 1000 / args.fps)
    result = {
        "fps_target": args.fps,
        "seconds": args.seconds,
        "vcodec": recorder.vcodec,
        "cpus": os.cpu_count(),
        "frames": outcome.frames,
        "fps_achieved": round(outcome.frames / args.seconds, 2),
        "late_ticks": outcome.late_ticks,
        "period_jitter_ms": {
            "p50": round(float(np.percentile(jitter, 50)), 3),
            "p99": round(float(np.percentile(jitter, 99)), 3),
            "max": round(float(jitter.max()), 3),
        },
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "teleop.json").write_text(json.dumps(result, indent=2) + "\n")
    for actor in (follower, leader):
        ray.get(actor.shutdown.remote())
    ray.get(sim.close.remote())


if __name__ == "__main__":
    main()
