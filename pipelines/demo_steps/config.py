"""The demo's config: sizes of every step, checked before the demo touches its folder."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.flags import FlagConfig, below_minimum, flag

STEP_COUNT = 8


@dataclass
class DemoConfig(FlagConfig):
    out: str = flag("flywheel-demo", "the demo's folder (its outputs, demo.json)")
    stage: int | None = flag(None, f"run only this step (1..{STEP_COUNT})")
    episodes: int = flag(40, "episodes to simulate")
    seed: int = flag(0, "seed of every step")
    steps: int = flag(150, "estimator training steps")
    policy_steps: int = flag(300, "policy steps")
    eval_episodes: int = flag(20, "episodes per policy")
    classifier_steps: int = flag(60, "reward classifier training steps")
    hilserl_steps: int = flag(5000, "HIL-SERL env steps")
    ray_address: str | None = flag(None, "a Ray cluster to join (default: start a local one)")
    mlflow: bool = flag(True, "log no MLflow runs")

    def problems(self) -> list[str]:
        """Every flag the user got wrong, each as `--flag: why` (empty when all is well)."""
        found = []
        if self.stage is not None and not 1 <= self.stage <= STEP_COUNT:
            found.append(f"--stage: {self.stage} is not a step (1..{STEP_COUNT})")
        found += below_minimum(
            [
                ("--episodes", self.episodes, 4),
                ("--steps", self.steps, 1),
                ("--policy-steps", self.policy_steps, 1),
                ("--eval-episodes", self.eval_episodes, 1),
                ("--classifier-steps", self.classifier_steps, 1),
                ("--hilserl-steps", self.hilserl_steps, 1),
            ]
        )
        return found
