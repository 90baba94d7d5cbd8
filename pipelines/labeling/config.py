"""`LabelConfig`: the options of a Stage-0 labeling and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.dataset import DatasetError
from pipelines.labeling import advantage
from pipelines.runtime.flags import FlagConfig, flag

INTERVENTION_COLUMN = "complementary_info.is_intervention"


@dataclass
class LabelConfig(FlagConfig):
    dataset: str = flag(help="LeRobot v2.1 or v3.0 dataset folder", positional=True)
    threshold: float = flag(70.0, "binary: top X%% of each stage's rewards get task_index=1")
    chunk_size: int = flag(50, "frames to look ahead for the progress difference")
    discretion_type: str = flag(
        "binary",
        "binary: a top share and the rest; n_slices: equal slices of each stage's rewards",
        choices=advantage.DISCRETION_TYPES,
    )
    n_slices: int = flag(10, "slices for n_slices")
    advantage_source: str = flag(
        "progress",
        "the column the rewards are computed from",
        choices=advantage.ADVANTAGE_SOURCES,
    )
    stage_nums: int = flag(1, "stages by stage_progress_gt, each with its own percentiles")
    dry_run: bool = flag(False, "print the statistics, change nothing")
    task: str | None = flag(
        None, "task text for the labels (default: the dataset's own task texts)"
    )
    data_dir: str = flag("data", "folder of episode parquet files, e.g. data_KAI0_100000")
    intervention_positive: bool = flag(
        False, "frames recorded under human intervention always get the top label"
    )
    per_task_threshold: bool = flag(
        False, "percentiles per task (and stage) instead of across all tasks"
    )
    ray_address: str | None = flag(
        None, "existing Ray cluster (default: RAY_ADDRESS, else a local cluster)"
    )
    mlflow: bool = flag(True, "do not log an MLflow run")

    @property
    def n_labels(self) -> int:
        return 2 if self.discretion_type == "binary" else self.n_slices

    def validate(self) -> None:
        if not 0 <= self.threshold <= 100:
            raise DatasetError(f"--threshold {self.threshold}: must be between 0 and 100")
        for option, value in (
            ("--chunk-size", self.chunk_size),
            ("--n-slices", self.n_slices),
            ("--stage-nums", self.stage_nums),
        ):
            if value < 1:
                raise DatasetError(f"{option} {value}: must be at least 1")
        if self.discretion_type not in advantage.DISCRETION_TYPES:
            raise DatasetError(f"--discretion-type {self.discretion_type!r}: binary or n_slices")
        if self.advantage_source not in advantage.ADVANTAGE_SOURCES:
            raise DatasetError(f"--advantage-source {self.advantage_source!r}: unknown source")
        if self.task is not None and not self.task.strip():
            raise DatasetError("--task: empty task text")
        if not self.data_dir or "/" in self.data_dir or self.data_dir in (".", ".."):
            raise DatasetError(f"--data-dir {self.data_dir!r}: a folder name inside the dataset")
