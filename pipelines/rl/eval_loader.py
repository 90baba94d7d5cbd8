"""`flywheel eval-policy` loads `hilserl` checkpoints through this loader (registered on import).

The env a HIL-SERL actor is rolled out in comes from its checkpoint (`run.env`: task, image
size, fps, `action_mode="ee_delta"`); the actor acts deterministically (its mean action) on the
simulator's observations and returns raw end-effector deltas (`pipelines.rl.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.dataset import DatasetError
from pipelines.evaluation.config import EnvSettings
from pipelines.evaluation.sources import register_loader
from pipelines.rl.policy import KIND, HilserlPolicy, actor_weights, read_checkpoint


@dataclass
class LoadedHilserl:
    name: str
    source: str  # the checkpoint folder the user gave
    env: EnvSettings
    agent_config: dict
    actor_state: dict
    encoder_export: dict | None
    max_ee_step: float

    def check(self, env) -> None:
        obs = env.observation_space
        if env.action_space.shape != (self.agent_config["action_dim"],):
            raise DatasetError(
                f"{self.name}: the actor's action has {self.agent_config['action_dim']} "
                f"dimensions, the simulator's {env.action_space.shape[0]}"
            )
        missing = [k for k in self.agent_config["cameras"] if k not in obs.spaces]
        if missing:
            raise DatasetError(f"{self.name}: camera {missing[0]!r} is not one of the simulator's")

    def make(self, env):
        return HilserlPolicy(
            self.agent_config, self.actor_state, self.encoder_export, self.max_ee_step
        )


def load_hilserl(path: Path, options) -> LoadedHilserl:
    """eval-policy's loader for `hilserl` checkpoints (`options`: its ArmOptions)."""
    meta, state = read_checkpoint(path)
    if options.cfg_scale != 1.0 or options.n_action_steps not in (None, 1):
        raise DatasetError(f"{path}: a HIL-SERL actor takes no --cfg-scale or --n-action-steps")
    env = meta["run"]["env"]
    run = path.parent.name if path.name.startswith("checkpoint_") else path.name
    return LoadedHilserl(
        name=options.name or f"{run}@{meta['env_steps']}",
        source=str(path),
        env=EnvSettings(
            task=env["task"],
            image_size=int(env["image_size"]),
            fps=int(env["fps"]),
            action_mode=env["action_mode"],
        ),
        agent_config=meta["agent"],
        actor_state=actor_weights(state),
        encoder_export=state.get("frozen_encoder"),
        max_ee_step=float(meta["run"].get("max_ee_step", 0.02)),
    )


register_loader(KIND)(load_hilserl)
