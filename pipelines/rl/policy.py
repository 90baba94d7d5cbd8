"""A saved HIL-SERL actor as a policy: `reset()`, `act(observation) -> action` (eval-policy's).

A `hilserl` checkpoint (a folder `checkpoint_*` of a run: `state.pt` and `hilserl.json`) holds
the agent's config, its weights and, with a frozen encoder, that encoder's weights too, so the
actor needs nothing else. `HilserlPolicy` acts deterministically (the actor's mean, no
exploration noise) on the simulator's raw observations, stacking frames as in training, and
returns the raw `ee_delta` action (`[dx, dy, dz]` in m, gripper 0..100) that an `SO101Env` in
`action_mode="ee_delta"` takes; the env settings it was trained in are the checkpoint's
`env` (`task`, `image_size`, `fps`, `action_mode`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pipelines.dataset import DatasetError
from pipelines.rl.agent import AgentPolicy
from pipelines.rl.config import KIND, AgentConfig
from pipelines.rl.features import frozen_from_export
from pipelines.rl.frames import FrameStack, replay_frame
from pipelines.runtime.checkpoints import load_state, read_meta
from pipelines.simulator import SO101Env
from pipelines.simulator.wrappers import denormalize_ee_action


class HilserlPolicy:
    def __init__(self, agent_config: dict, actor_state: dict, encoder_export, max_ee_step: float):
        torch.set_num_threads(1)
        self.config = AgentConfig(**agent_config)
        self.policy = AgentPolicy(self.config)
        self.policy.load(actor_state, 0)
        self.encoder = frozen_from_export(encoder_export) if encoder_export else None
        self.max_ee_step = float(max_ee_step)
        self.history = FrameStack(self.config.frame_stack)
        self._first = True

    def reset(self) -> None:
        self._first = True

    def act(self, observation: dict) -> np.ndarray:
        frame = replay_frame(observation, self.config.cameras, self.encoder)
        if self._first:
            self.history.reset(frame)
            self._first = False
        else:
            self.history.push(frame)
        action = self.policy.act(self.history.stacked(), explore=False)
        return denormalize_ee_action(action, self.max_ee_step)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(meta, state) of a `hilserl` checkpoint; a one-line DatasetError for anything else."""
    path = Path(path)
    meta = read_meta(path, KIND)
    try:
        state = load_state(path)
        state["agent"]["actor"]
        meta["agent"], meta["run"]["env"]
    except (OSError, KeyError, TypeError, RuntimeError) as e:
        raise DatasetError(f"{path}: incomplete hilserl checkpoint ({e})") from None
    return meta, state


def actor_weights(state: dict) -> dict:
    """The actor's (and a trainable encoder's) weights of a checkpoint's state, as numpy."""
    actor = {"actor": {k: v.numpy() for k, v in state["agent"]["actor"].items()}}
    if "encoder" in state["agent"]:
        actor["encoder"] = {k: v.numpy() for k, v in state["agent"]["encoder"].items()}
    return actor


def load_policy(path: str | os.PathLike) -> tuple[HilserlPolicy, dict]:
    """The checkpoint's actor as a policy, and the env settings it was trained in."""
    meta, state = read_checkpoint(path)
    policy = HilserlPolicy(
        meta["agent"],
        actor_weights(state),
        state.get("frozen_encoder"),
        meta["run"].get("max_ee_step", 0.02),
    )
    return policy, dict(meta["run"]["env"])


def evaluate_actor(path: str | os.PathLike, episodes: int = 50, seed: int = 0) -> dict:
    """Success over `episodes` seeded episodes without the operator, by eval-policy's rule:
    an episode succeeds if `info["success"]` at any step before the time limit; seeds count up
    from `seed`. (The same episodes `flywheel eval-policy CHECKPOINT` rolls out.)"""
    policy, env_settings = load_policy(path)
    env = SO101Env(
        env_settings["task"],
        fps=env_settings["fps"],
        image_size=env_settings["image_size"],
        action_mode=env_settings["action_mode"],
    )
    outcomes = []
    for s in range(seed, seed + episodes):
        obs, info = env.reset(seed=s)
        policy.reset()
        steps, success = 0, bool(info.get("success"))
        while not success:
            obs, _r, terminated, truncated, info = env.step(policy.act(obs))
            steps += 1
            success = bool(info.get("success"))
            if terminated or truncated:
                break
        outcomes.append({"seed": s, "success": success, "steps": steps})
    wins = [o for o in outcomes if o["success"]]
    return {
        "episodes": episodes,
        "successes": len(wins),
        "success_rate": len(wins) / episodes,
        "mean_steps_to_success": float(np.mean([o["steps"] for o in wins])) if wins else None,
        "outcomes": outcomes,
    }
