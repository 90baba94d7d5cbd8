"""The demo's config: sizes of every step, checked before the demo touches its folder."""

from __future__ import annotations

from dataclasses import dataclass

STEP_COUNT = 8


@dataclass
class DemoConfig:
    out: str = "flywheel-demo"
    stage: int | None = None
    episodes: int = 40
    seed: int = 0
    steps: int = 150
    policy_steps: int = 300
    eval_episodes: int = 20
    classifier_steps: int = 60
    hilserl_steps: int = 5000
    ray_address: str | None = None
    mlflow: bool = True

    def problems(self) -> list[str]:
        """Every flag the user got wrong, each as `--flag: why` (empty when all is well)."""
        found = []
        if self.stage is not None and not 1 <= self.stage <= STEP_COUNT:
            found.append(f"--stage: {self.stage} is not a step (1..{STEP_COUNT})")
        for flag, value, low in (
            ("--episodes", self.episodes, 4),
            ("--steps", self.steps, 1),
            ("--policy-steps", self.policy_steps, 1),
            ("--eval-episodes", self.eval_episodes, 1),
            ("--classifier-steps", self.classifier_steps, 1),
            ("--hilserl-steps", self.hilserl_steps, 1),
        ):
            if value < low:
                found.append(f"{flag}: must be at least {low}, not {value}")
        return found
