"""The reward classifier's training config (`flywheel train-classifier`) and checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.runtime.run_config import RunConfig
from pipelines.vision.encoders import spatial_encoders

KIND = register_kind("classifier", "flywheel train-classifier")


@dataclass
class ClassifierRunConfig(RunConfig):
    """train-classifier's run section (its defaults)."""

    steps: int = 2000
    batch_size: int = flag(32, "frames per worker per step")
    name: str | None = flag(None, "run name; unset: classifier-<encoder>")


@dataclass
class ClassifierTrainConfig(FlagConfig):
    dataset: str = flag(help="a LeRobot dataset", positional=True)
    labels: str | None = flag(
        None,
        "success-frames CSV (episode,success_start,env_reset_start[,success_ranges]); "
        "unset: the dataset's next.reward",
        metavar="CSV",
    )
    encoder: str = flag(
        "small_convnet",
        "image encoder (small_convnet: fast on CPUs; resnet10 for GPUs)",
        choices=spatial_encoders(),
    )
    image_size: int = flag(128, "the model's input size in pixels")
    shift: int = flag(4, "random-shift padding in pixels")
    weight_decay: float = flag(0.01, "AdamW weight decay")
    min_precision: float | None = flag(
        None,
        "choose the lowest threshold with validation precision >= P; unset: best F1",
        metavar="P",
    )
    run: ClassifierRunConfig = section(ClassifierRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or f"classifier-{self.encoder}"
