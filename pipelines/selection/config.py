"""The learned selector's training config (`flywheel train-selector`) and checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig
from pipelines.runtime.run_config import RunConfig

KIND = register_kind("selector", "flywheel train-selector")


@dataclass
class SelectorRunConfig(RunConfig):
    """train-selector's run section (its defaults)."""

    workers: int = 1
    steps: int = 1000
    batch_size: int = 64  # attempts per worker per step
    checkpoint_every: int = 500
    holdout: float = 0.2
    name: str | None = "selector"


@dataclass
class SelectorTrainConfig(FlagConfig):
    dataset: str
    image_size: int = 32
    encoder: str = "small_convnet"
    cameras: str | None = None  # comma-separated; default: every camera
    run: SelectorRunConfig = field(default_factory=SelectorRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or "selector"
