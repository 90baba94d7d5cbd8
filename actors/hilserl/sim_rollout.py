"""HIL-SERL episodes in the simulator, supervised by the simulated operator.

The Gymnasium `SO101Env` in `ee_delta` mode behind the normalizing wrapper
(`pipelines.simulator.wrappers`), the simulated `Operator` watching the policy and taking over
with expert actions when it drifts (then handing back). The reward is the simulator's sparse
one (1 on success, which ends the episode) or the served classifier's (`RewardSource`): then
the classifier alone decides the reward and, with `terminate_on_success`, the end; the
simulator's success is kept for the metrics only.
"""

from __future__ import annotations

import time

import numpy as np

from actors.hilserl.config import CollectorConfig, EpisodeSpec
from actors.hilserl.episodes import EpisodeBuilder
from pipelines.rl.replay import Episode
from pipelines.simulator import SO101Env
from pipelines.simulator.controllers import Operator
from pipelines.simulator.wrappers import NormalizedEEDelta


class SimRollout:
    """Episodes in the simulator, supervised by the simulated operator (module docstring)."""

    def __init__(self, cfg: CollectorConfig, spec: EpisodeSpec, encoder=None, reward=None):
        self.cfg = cfg
        self.spec = spec
        self.encoder = encoder
        base = SO101Env(
            cfg.task,
            fps=cfg.fps,
            image_size=spec.image_size,
            action_mode="ee_delta",
            max_episode_steps=spec.max_episode_steps,
        )
        self.env = NormalizedEEDelta(base)
        self.base = base
        self._agent_action: np.ndarray | None = None
        self._act = None
        self.operator = Operator(base, self._policy_raw) if cfg.operator else None
        self.reward = reward

    def _policy_raw(self, obs, info) -> np.ndarray:
        self._agent_action = self._act()
        return self.env.action(self._agent_action)

    def episode(self, act, seed: int) -> Episode:
        """One episode; `act()` gives the policy's normalized action for the current frame."""
        cfg = self.cfg
        builder = EpisodeBuilder(self.spec, self.encoder)
        obs, info = self.env.reset(seed=seed)
        if hasattr(self.reward, "reset"):
            self.reward.reset()
        if self.operator is not None:
            self.operator.reset(seed)
        stacked = [builder.observe(obs, first=True)]
        self._act = lambda: act(stacked[0])
        success_seen = bool(info["success"])
        terminated = truncated = False
        started = time.monotonic()
        while not (terminated or truncated):
            if self.operator is not None:
                raw, intervening = self.operator(obs, info)
                stored = self.env.normalize(raw) if intervening else self._agent_action
            else:
                stored = self._act()
                raw, intervening = self.env.action(stored), False
            obs, env_reward, env_terminated, truncated, info = self.base.step(raw)
            success_seen |= bool(info["success"])
            if self.reward is None:
                reward, terminated = env_reward, env_terminated
            else:
                reward = self.reward(obs)
                terminated = bool(reward > 0 and cfg.terminate_on_success)
                if not terminated and self.base.elapsed_steps >= self.base.max_episode_steps:
                    truncated = True
            builder.step(stored, reward, intervening)
            stacked[0] = builder.observe(obs)
        info_out = builder.info(
            seed,
            success_seen,
            takeovers=self.operator.takeovers if self.operator is not None else 0,
            seconds=time.monotonic() - started,
        )
        return builder.build(terminated, info_out)

    def close(self) -> None:
        """Nothing to release (the collector closes every rollout the same way)."""
