"""Where a collected episode's pieces come from: its env, its responders, its driver, its selector.

* `open_env`: the simulator (`--robot sim`), or an `ArmWorkcell` on the emulated or a real
  SO-101 (`actors.so101.open_so101`), with the simulator env its controllers and policies are
  built and checked on.
* `PolicyAction`: a scripted controller or a trained policy checkpoint as `(obs, info) ->
  action` (the driver on plain frames, or a scorer's policy).
* `make_responders` / `make_selector`: the candidates' proposers and the selector that draws
  among them (`--scorer`: a train-selector checkpoint's logits, or a policy's distance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actors.camera import CameraError
from actors.collection.config import CollectConfig
from actors.collection.episode import ControllerResponder, PolicyResponder
from actors.collection.workcell import ArmWorkcell
from actors.feetech.bus import BusError
from pipelines.dataset import DatasetError
from pipelines.evaluation import ArmOptions, load_source
from pipelines.runtime.checkpoints import checkpoint_kind, latest_checkpoint
from pipelines.selection.config import KIND as SELECTOR_KIND
from pipelines.selection.model import ApprovalScorer
from pipelines.selection.selector import ActionSelector, PolicyDistanceScorer
from pipelines.simulator import SO101Env
from pipelines.simulator.controllers import CONTROLLERS, make_controller


def open_env(cfg: CollectConfig, seed: int):
    """(the episode's env, the simulator env its controllers and policies are built on).

    The simulator: one `SO101Env`, both. `--robot emulated`: an `ArmWorkcell` on an
    `EmulatedSO101` and its coupled simulator env. `--robot real`: an `ArmWorkcell` on the
    follower and cameras, and a simulator env that only gives the spaces policies are checked
    against."""
    if cfg.robot == "sim":
        env = SO101Env(
            cfg.task,
            fps=cfg.fps,
            image_size=cfg.image_size,
            action_mode="joint",
            max_episode_steps=cfg.max_steps,
        )
        return env, env
    try:
        cell = ArmWorkcell.open(
            cfg.arm,
            emulated=cfg.robot == "emulated",
            task=cfg.task,
            seed=seed,
            image_size=cfg.image_size,
            max_episode_steps=cfg.max_steps,
            fps=cfg.fps,
        )
    except (BusError, CameraError) as e:  # a port or camera the user named that does not answer
        if cfg.robot == "emulated":
            raise
        raise DatasetError(f"--robot real: {e}") from None
    return cell, cell.sim_env


def load_policy(path: str, env):
    """A trained policy checkpoint (any kind `eval-policy` loads), checked against the env."""
    loaded = load_source(path, ArmOptions())
    loaded.check(env)
    return loaded.make(env)


class PolicyAction:
    """A controller or checkpoint as a callable `(obs, info) -> action` (driver or scorer)."""

    def __init__(self, name: str, env, seed: int | None):
        self.controller = None
        self.policy = None
        name = name.removeprefix("controller:")
        if name in CONTROLLERS:
            self.controller = make_controller(name, env, seed=seed)
        else:
            self.policy = load_policy(name, env)

    def reset(self, seed: int | None) -> None:
        if self.controller is not None:
            self.controller.reset(seed)
        else:
            self.policy.reset()

    def __call__(self, obs: dict, info: dict | None = None) -> np.ndarray:
        if self.controller is not None:
            return self.controller(obs, info or {})
        return self.policy.act(obs)


def make_responders(cfg: CollectConfig, env, seed: int) -> list:
    out = []
    for name in cfg.responder_names():
        short = name.removeprefix("controller:")
        if short in CONTROLLERS:
            out.append(ControllerResponder(short, env, seed))
        else:
            out.append(PolicyResponder(name, load_policy(name, env), env))
    return out


def selector_checkpoint(path: str) -> Path | None:
    """A train-selector checkpoint at `path` (or the latest of a run folder there), if any."""
    if not Path(path).is_dir():
        return None
    if checkpoint_kind(path) == SELECTOR_KIND:
        return Path(path)
    return latest_checkpoint(path, SELECTOR_KIND)


def make_selector(cfg: CollectConfig, env, seed: int) -> ActionSelector:
    selection = cfg.selection
    scorer = None
    learned = selector_checkpoint(selection.scorer) if selection.scorer else None
    if learned is not None:  # the trained P(approve | state, candidate): its logits
        scorer = ApprovalScorer(learned)
        scorer.check(env)
    elif selection.scorer:
        scoring = PolicyAction(selection.scorer, env, seed)
        scoring.reset(seed)

        def action_at(obs):
            return env.unwrapped.joint_targets(scoring(obs, {}))

        scorer = PolicyDistanceScorer(action_at, selection.score_scale)
    return ActionSelector(
        selection.selector,
        epsilon=selection.epsilon,
        temperature=selection.temperature,
        scorer=scorer,
        seed=seed + 1,
    )
