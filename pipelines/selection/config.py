"""The learned selector's training config (`flywheel train-selector`) and checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.runtime.run_config import RunConfig

KIND = register_kind("selector", "flywheel train-selector")


@dataclass
class SelectorRunConfig(RunConfig):
    """train-selector's run section (its defaults)."""

    workers: int = 1
    steps: int = 1000
    batch_size: int = flag(64, "attempts per worker per step")
    name: str | None = "selector"


@dataclass
class SelectorTrainConfig(FlagConfig):
    dataset: str = flag(
        help="a dataset of flywheel collect (with approval_status)", positional=True
    )
    image_size: int = flag(32, "the model's input size in pixels")
    encoder: str = flag("small_convnet", "an encoder of pipelines.vision.encoders")
    cameras: str | None = flag(None, "comma-separated cameras; unset: all")
    run: SelectorRunConfig = section(SelectorRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or "selector"
