"""One episode's frames in replay form, as both rollouts (simulator, SO-101) build it."""

from __future__ import annotations

import numpy as np

from actors.hilserl.config import EpisodeSpec
from pipelines.rl.frames import FrameStack, replay_frame
from pipelines.rl.replay import Episode


class EpisodeBuilder:
    """Accumulates one episode's frames in replay form."""

    def __init__(self, spec: EpisodeSpec, encoder):
        self.spec = spec
        self.encoder = encoder
        self.history = FrameStack(spec.frame_stack)
        self.frames: list[dict] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.interventions: list[bool] = []
        self.images: dict[str, list[np.ndarray]] = {k: [] for k in spec.cameras}

    @property
    def keeps_images(self) -> bool:
        return self.spec.keep_images or self.encoder is None

    def observe(self, obs: dict, first: bool = False) -> dict:
        frame = replay_frame(obs, self.spec.cameras, self.encoder)
        self.frames.append(frame)
        if self.keeps_images:
            for key in self.spec.cameras:
                self.images[key].append(np.asarray(obs[key]))
        if first:
            self.history.reset(frame)
        else:
            self.history.push(frame)
        return self.history.stacked()

    def step(self, action: np.ndarray, reward: float, intervention: bool) -> None:
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.rewards.append(float(reward))
        self.interventions.append(bool(intervention))

    def info(self, seed: int, success: bool, **more) -> dict:
        """The episode's summary (what the learner logs), `more` added."""
        return {
            "seed": seed,
            "success": success,
            "length": len(self.actions),
            "return": float(np.sum(self.rewards)),
            "intervention_steps": int(np.sum(self.interventions)),
            **more,
        }

    def build(self, terminated: bool, info: dict) -> Episode:
        t = len(self.actions)
        obs = {key: np.stack([f[key] for f in self.frames]) for key in self.frames[0]}
        if self.keeps_images:
            for key in self.spec.cameras:
                obs[key] = np.stack(self.images[key])
        return Episode(
            obs=obs,
            action=np.stack(self.actions) if t else np.zeros((0, 4), np.float32),
            reward=np.asarray(self.rewards, dtype=np.float32),
            terminated=bool(terminated),
            intervention=np.asarray(self.interventions, dtype=bool),
            demo=np.zeros(t, dtype=bool),
            info=info,
        )
