"""`LabelConfig`: the options of a Stage-0 labeling and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.dataset import DatasetError
from pipelines.labeling import advantage

INTERVENTION_COLUMN = "complementary_info.is_intervention"


@dataclass
class LabelConfig:
    dataset: str
    threshold: float = 70.0
    chunk_size: int = 50
    discretion_type: str = "binary"
    n_slices: int = 10
    advantage_source: str = "progress"
    stage_nums: int = 1
    dry_run: bool = False
    task: str | None = None
    data_dir: str = "data"
    intervention_positive: bool = False
    per_task_threshold: bool = False
    ray_address: str | None = None
    mlflow: bool = True

    @property
    def n_labels(self) -> int:
        return 2 if self.discretion_type == "binary" else self.n_slices

    def validate(self) -> None:
        if not 0 <= self.threshold <= 100:
            raise DatasetError(f"--threshold {self.threshold}: must be between 0 and 100")
        if self.chunk_size < 1:
            raise DatasetError(f"--chunk-size {self.chunk_size}: must be at least 1")
        if self.n_slices < 1:
            raise DatasetError(f"--n-slices {self.n_slices}: must be at least 1")
        if self.stage_nums < 1:
            raise DatasetError(f"--stage-nums {self.stage_nums}: must be at least 1")
        if self.discretion_type not in advantage.DISCRETION_TYPES:
            raise DatasetError(f"--discretion-type {self.discretion_type!r}: binary or n_slices")
        if self.advantage_source not in advantage.ADVANTAGE_SOURCES:
            raise DatasetError(f"--advantage-source {self.advantage_source!r}: unknown source")
        if self.task is not None and not self.task.strip():
            raise DatasetError("--task: empty task text")
        if not self.data_dir or "/" in self.data_dir or self.data_dir in (".", ".."):
            raise DatasetError(f"--data-dir {self.data_dir!r}: a folder name inside the dataset")
