"""The reward classifier's training config (`flywheel train-classifier`) and checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig
from pipelines.runtime.run_config import RunConfig

KIND = register_kind("classifier", "flywheel train-classifier")


@dataclass
class ClassifierRunConfig(RunConfig):
    """train-classifier's run section (its defaults)."""

    steps: int = 2000
    batch_size: int = 32  # frames per worker per step
    checkpoint_every: int = 500
    holdout: float = 0.2


@dataclass
class ClassifierTrainConfig(FlagConfig):
    dataset: str
    labels: str | None = None  # a success-frames CSV; None: the dataset's next.reward
    encoder: str = "small_convnet"
    image_size: int = 128
    shift: int = 4  # random-shift padding in pixels
    weight_decay: float = 0.01
    min_precision: float | None = None  # None: the threshold of best F1
    run: ClassifierRunConfig = field(default_factory=ClassifierRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or f"classifier-{self.encoder}"
