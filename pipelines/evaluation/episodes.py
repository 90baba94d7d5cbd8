"""One arm's episodes: each rolled out from its seed, scored, and filmed for MLflow if asked."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.dataset import VideoWriter
from pipelines.evaluation.config import EnvSettings
from pipelines.evaluation.sources import LoadedPolicy, Policy
from pipelines.simulator.controllers import run_episode


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int  # environment steps taken
    steps_to_success: int | None
    video: bytes | None = None


class _Acting:
    """A `Policy` (`reset()`, `act(observation)`) as the simulator's episode loop drives one."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def reset(self, seed: int | None) -> None:
        self.policy.reset()

    def __call__(self, obs: dict, info: dict) -> np.ndarray:
        return self.policy.act(obs)


def score_episode(env, policy: Policy, seed: int, record: bool = False) -> EpisodeResult:
    """One episode (`simulator.run_episode`); success if info["success"] at any step before
    truncation; filmed (front | wrist) with `record`."""
    frames: list[np.ndarray] = []
    run = run_episode(env, _Acting(policy), seed, on_observation=frames.append if record else None)
    steps, success = run["length"], run["success"]
    video = _encode([_frame(obs) for obs in frames], env.unwrapped.fps) if record else None
    return EpisodeResult(seed, success, steps, steps if success else None, video)


def _frame(obs: dict) -> np.ndarray:
    cams = [obs[k] for k in sorted(obs) if k.startswith("observation.images.")]
    return np.concatenate(cams, axis=1)


def _encode(frames: list[np.ndarray], fps: float) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "episode.mp4"
        h, w = frames[0].shape[:2]
        with VideoWriter(path, fps, w, h) as writer:
            for f in frames:
                writer.write(f)
        return path.read_bytes()


def run_group(
    loaded: LoadedPolicy, env_settings: EnvSettings, seeds: list[int], record_below: int
) -> list[EpisodeResult]:
    """Ray task body: some of one arm's seeds; episodes of seeds < `record_below` are filmed."""
    env = env_settings.make()
    policy = loaded.make(env)
    return [score_episode(env, policy, s, record=s < record_below) for s in seeds]
