"""The estimator family's configs: training (`flywheel train-estimator`) and estimation
(`flywheel estimate`), and its checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.runtime.run_config import RunConfig
from pipelines.vision.encoders import ENCODERS

KIND = register_kind("estimator", "flywheel train-estimator")
VARIANTS = ("kai0", "pi06")  # two frames (kai0) or one (pi06)


@dataclass
class EstimatorRunConfig(RunConfig):
    """train-estimator's run section (its defaults)."""

    steps: int = 1000
    batch_size: int = flag(32, "pairs per worker per step")
    checkpoint_every: int = 200
    name: str | None = flag(None, "run name; unset: estimator-<variant>")


@dataclass
class EstimatorTrainConfig(FlagConfig):
    dataset: str = flag(help="a LeRobot dataset with stage_progress_gt", positional=True)
    variant: str = flag("kai0", "two frames or one", choices=VARIANTS)
    image_size: int = flag(64, "the model's input size in pixels")
    encoder: str = flag("resnet_small", "image encoder", choices=sorted(ENCODERS))
    run: EstimatorRunConfig = section(EstimatorRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or f"estimator-{self.variant}"


@dataclass
class EstimateConfig(FlagConfig):
    dataset: str = flag(help="a LeRobot dataset (the output is written into it)", positional=True)
    checkpoint: str = flag(help="a checkpoint folder of train-estimator")
    batch_size: int = flag(64, "frames per encoder batch")
    replicas: int | None = flag(None, "model replicas (actors); unset: one per GPU, else per CPU")
    gpus_per_replica: float | None = flag(None, "unset: 1 when the cluster has GPUs")
    data_dir: str = flag("data", "episode files to read")
    ray_address: str | None = flag(None, "the Ray cluster; unset: a local one")
