"""The estimator family's configs: training (`flywheel train-estimator`) and estimation
(`flywheel estimate`), and its checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig
from pipelines.runtime.run_config import RunConfig

KIND = register_kind("estimator", "flywheel train-estimator")


@dataclass
class EstimatorRunConfig(RunConfig):
    """train-estimator's run section (its defaults)."""

    steps: int = 1000
    batch_size: int = 32  # pairs per worker per step
    checkpoint_every: int = 200
    holdout: float = 0.2


@dataclass
class EstimatorTrainConfig(FlagConfig):
    dataset: str
    variant: str = "kai0"
    image_size: int = 64
    encoder: str = "resnet_small"
    run: EstimatorRunConfig = field(default_factory=EstimatorRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or f"estimator-{self.variant}"


@dataclass
class EstimateConfig(FlagConfig):
    dataset: str
    checkpoint: str
    batch_size: int = 64
    replicas: int | None = None  # default: one per GPU, else one per CPU
    gpus_per_replica: float | None = None  # default: 1 when the cluster has GPUs
    data_dir: str = "data"
    ray_address: str | None = None
