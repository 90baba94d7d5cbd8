"""`flywheel robot teleop`: drive the follower from the leader and record LeRobot episodes.

The arms and cameras are Ray actors (`open_so101(remote=True)`): real ones on the serial ports
and OpenCV cameras, or the emulated SO-101 with an expert hand on its leader, whose simulator
also ends an episode as a success when the cube is grasped. Keys: s success, f failure,
r re-record, q stop. The success frames are synced to the reward classifier's labels.
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path

import numpy as np
import ray

from actors.arm import JOINTS
from actors.so101.build import open_so101
from actors.so101.config import RobotError, TeleopConfig
from actors.teleop import KeyboardControls, TeleopOutcome, TeleopSession
from pipelines.classifier.labels import sync_success_csv
from pipelines.dataset import (
    V21,
    V30,
    DatasetError,
    EpisodeRecorder,
    default_codec_note,
    resolve_video_codec,
)
from pipelines.runtime.cluster import ClusterError, check_job_output, connect
from pipelines.simulator.tasks import TASKS


def check_teleop(config: TeleopConfig) -> str | None:
    """One-line RobotErrors for bad options (before anything starts); the video codec."""
    emulated = config.emulated
    robot = config.robot
    if not emulated and (robot.follower_port is None or robot.leader_port is None):
        raise RobotError("give both --follower-port and --leader-port (or neither, for --sim)")
    robot.camera_sources()  # each NAME=SOURCE
    for name, value in (("--fps", config.fps), ("--episode-time", config.episode_time)):
        if not (math.isfinite(value) and value > 0):
            raise RobotError(f"{name} {value:g}: must be a positive number")
    if config.episodes < 1:
        raise RobotError(f"--episodes {config.episodes}: at least 1")
    if not (math.isfinite(config.max_step) and config.max_step > 0):
        raise RobotError(f"--max-step {config.max_step:g}: must be a positive number")
    check_out(config.out)
    if config.steps_after_success < 0:
        raise RobotError(f"--steps-after-success {config.steps_after_success}: at least 0")
    if config.format not in (None, V21, V30):
        raise RobotError(f"--format {config.format!r}: {V21} or {V30}")
    try:
        vcodec = None if config.vcodec is None else resolve_video_codec(config.vcodec)
    except DatasetError as e:
        raise RobotError(f"--vcodec: {e}") from None
    return vcodec


def check_out(out: str) -> None:
    """OUT: a folder that can be created (not under a regular file, nor in /proc), or one that
    exists; anything else is a one-line RobotError before the arms start."""
    try:
        check_job_output(out, "OUT")
    except ClusterError as e:
        raise RobotError(str(e)) from None
    if Path(out).exists() and not Path(out).is_dir():
        raise RobotError(f"OUT {out}: exists and is not a folder")


def record_teleop(config: TeleopConfig) -> list[TeleopOutcome]:
    """Record `config.episodes` teleoperated episodes into `config.out` (module docstring)."""
    vcodec = check_teleop(config)
    if vcodec is None and (note := default_codec_note()):
        print(f"note: {note}", file=sys.stderr)
    emulated = config.emulated
    if config.task is None and not emulated:
        raise RobotError("--task TEXT: say what the recorded episodes do")
    task = config.task if config.task is not None else TASKS[config.sim_task].text
    connect(config.ray_address)
    arms = open_so101(
        config.robot,
        emulated=emulated,
        task=config.sim_task,
        seed=config.seed,
        image_size=config.image_size,
        hand="expert",
        max_step=config.max_step,
        remote=True,
    )
    robot = arms.robot
    try:
        first = ray.get([cam.latest.remote() for cam in arms.cameras.values()])
        sizes = {k: frame[0].shape[:2] for k, frame in zip(arms.cameras, first, strict=True)}
        recorder = EpisodeRecorder(
            config.out,
            fps=config.fps,
            task=task,
            joint_names=JOINTS,
            cameras=sizes,
            vcodec=vcodec,
            version=config.format,
        )

        def new_episode():
            if robot is not None:
                ray.get(robot.reset.remote(config.seed + recorder.total_frames))

        session = TeleopSession(
            arms.follower,
            arms.leader,
            arms.cameras,
            recorder,
            fps=config.fps,
            episode_time_s=config.episode_time,
            on_episode_start=new_episode,
            steps_after_success=config.steps_after_success,
        )
        keys = KeyboardControls(session)
        if keys.start():
            print("keys: s success, f failure, r re-record, q stop")
        watcher = watch_success(robot, session) if robot is not None else None
        try:
            return session.run(config.episodes)
        except ray.exceptions.RayError as e:  # an arm or camera failed for good: say which
            cause = getattr(e, "cause", None) or e
            raise RobotError(f"teleop stopped: {type(cause).__name__}: {cause}") from e
        finally:
            keys.close()
            if watcher is not None:
                watcher.set()
    finally:
        arms.close()  # shutting down: report the session's own error, not these


def teleop(config: TeleopConfig) -> int:
    """`record_teleop`, then each episode's outcome and timing, and the dataset."""
    outcomes = record_teleop(config)
    for o in outcomes:
        jitter = ""
        if o.periods_ms:
            dev = np.abs(np.array(o.periods_ms) - 1000 / config.fps)
            p50, p99 = np.percentile(dev, [50, 99])
            jitter = f", period jitter p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        print(f"  episode {o.episode_index}: {o.frames} frames, {o.outcome}{jitter}")
    print(f"Dataset: {config.out}")
    print(f"Success frames: {sync_success_csv(config.out)}")  # the reward classifier's labels
    return 0


def watch_success(robot, session: TeleopSession) -> threading.Event:
    """With the emulated robot, end an episode as a success when the simulator says so."""
    stop = threading.Event()

    def watch():
        judged = 0  # the last attempt declared a success
        while not stop.wait(0.1):
            # Read the attempt before asking the simulator: the answer then describes this
            # attempt's world (its reset came first), and `success(attempt=...)` is ignored if
            # the attempt ended meanwhile, so a late answer never ends the next episode.
            attempt = session.attempt
            if attempt == judged or not session.frames_this_episode:
                continue
            if ray.get(robot.state.remote())["success"]:
                session.success(attempt=attempt)
                judged = attempt

    threading.Thread(target=watch, name="success-watch", daemon=True).start()
    return stop
