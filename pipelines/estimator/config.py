"""The estimator family's configs: training (`flywheel train-estimator`) and estimation
(`flywheel estimate`), and its checkpoint kind."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.runtime.checkpoints import register_kind
from pipelines.runtime.flags import FlagConfig, flag, section
from pipelines.runtime.run_config import RunConfig
from pipelines.vision.encoders import ENCODERS

KIND = register_kind("estimator", "flywheel train-estimator")
VARIANTS = ("kai0", "pi06", "recap")  # progress of two frames (kai0) or one (pi06); RECAP's value
PROGRESS_VARIANTS = ("kai0", "pi06")  # learn from the stage_progress_gt column
DEFAULT_OUTCOMES = ("failure",)


@dataclass
class EstimatorRunConfig(RunConfig):
    """train-estimator's run section (its defaults)."""

    steps: int = 1000
    batch_size: int = flag(32, "pairs per worker per step")
    checkpoint_every: int = 200
    name: str | None = flag(None, "run name; unset: estimator-<variant>")


@dataclass
class EstimatorTrainConfig(FlagConfig):
    dataset: str = flag(
        help="a LeRobot dataset: with stage_progress_gt (kai0, pi06) or episode outcomes (recap)",
        positional=True,
    )
    variant: str = flag(
        "kai0",
        "kai0/pi06: progress of two frames or one, from stage_progress_gt; recap: the "
        "distributional value from episode outcomes (episode_success)",
        choices=VARIANTS,
    )
    image_size: int = flag(64, "the model's input size in pixels")
    encoder: str = flag("resnet_small", "image encoder", choices=sorted(ENCODERS))
    c_fail_coef: float = flag(1.0, "recap: failure penalty c_fail = coef x T_max(task)")
    default_outcome: str | None = flag(
        None,
        "recap: take episodes without an outcome as failures; unset: refuse them",
        choices=DEFAULT_OUTCOMES,
    )
    run: EstimatorRunConfig = section(EstimatorRunConfig)

    @property
    def run_name(self) -> str:
        return self.run.name or f"estimator-{self.variant}"


@dataclass
class EstimateConfig(FlagConfig):
    dataset: str = flag(help="a LeRobot dataset (the output is written into it)", positional=True)
    checkpoint: str = flag(
        help="a checkpoint folder of train-estimator, or its run folder (the latest checkpoint)"
    )
    batch_size: int = flag(64, "frames per encoder batch")
    replicas: int | None = flag(None, "model replicas (actors); unset: one per GPU, else per CPU")
    gpus_per_replica: float | None = flag(None, "unset: 1 when the cluster has GPUs")
    data_dir: str = flag("data", "episode files to read")
    n_step: int = flag(50, "recap: N of the N-step advantage")
    default_outcome: str | None = flag(
        None,
        "recap: take episodes without an outcome as failures (for the return past the "
        "episode's end); unset: refuse them",
        choices=DEFAULT_OUTCOMES,
    )
    ray_address: str | None = flag(None, "the Ray cluster; unset: a local one")
