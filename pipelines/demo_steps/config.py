"""The demo's config: sizes of every step, checked before the demo touches its folder."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import FlagConfig, below_minimum, flag
from pipelines.synthesis.config import parse_mix

STEP_COUNT = 8
MIX = "expert=0.2,hesitant=0.2,noisy=0.2,failing=0.4"  # Stage 3's bar: most rollouts not expert


@dataclass
class DemoConfig(FlagConfig):
    out: str = flag("flywheel-demo", "the demo's folder (its outputs, demo.json)")
    stage: int | None = flag(None, f"run only this step (1..{STEP_COUNT})")
    episodes: int = flag(200, "episodes to simulate")
    mix: str = flag(MIX, "controller shares of the simulated episodes (synth --mix)")
    seed: int = flag(0, "seed of every step")
    steps: int = flag(150, "value model training steps")
    policy_steps: int = flag(2000, "policy steps")
    policy_batch_size: int = flag(64, "frames per policy step")
    policy_image_size: int = flag(32, "the policies' input size in pixels")
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
                ("--policy-batch-size", self.policy_batch_size, 1),
                ("--policy-image-size", self.policy_image_size, 16),
                ("--eval-episodes", self.eval_episodes, 1),
                ("--classifier-steps", self.classifier_steps, 1),
                ("--hilserl-steps", self.hilserl_steps, 1),
            ]
        )
        try:
            parse_mix(self.mix)
        except DatasetError as e:
            found.append(str(e))
        return found
