"""The run section every Ray Train job shares: `RunConfig`, its flags and its checks.

A trainer's config nests a `RunConfig` (a subclass of it when the job has other defaults:
`dataclasses` lets a subclass change a field's default) as its `run` field. `add_run_flags`
adds the section's flags to a job's parser with that job's defaults, so that
`config_from_flags` builds the section from them; `check_run` refuses numbers a run cannot
use, in one line. `FlagConfig.from_flags(**values)` builds a nested config from flat values,
as the flags give them (what a library caller, such as the demo, a sweep or a benchmark, uses).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.dataset import DatasetError
from pipelines.runtime.cluster import check_job_output
from pipelines.runtime.flags import add_flags, below_minimum, flag


@dataclass
class RunConfig:
    """How a training run runs: workers, budget, optimizer, checkpoints, where it is kept."""

    workers: int = flag(2, "DDP workers")
    gpus_per_worker: float = flag(0.0, "GPUs per worker")
    cpus_per_worker: int | None = flag(
        None, "CPUs per worker; unset: the cluster's CPUs divided among the workers"
    )
    steps: int = flag(1000, "training steps (a rerun with more resumes)")
    batch_size: int = flag(32, "samples per worker per step")
    lr: float = flag(1e-3, "peak learning rate (warm-up, cosine decay)")
    checkpoint_every: int = flag(500, "steps per checkpoint")
    holdout: float = flag(0.2, "share of held-out episodes")
    seed: int = flag(0, "seed of the split, the sampling and the model")
    name: str | None = flag(None, "run name; unset: the family's")
    storage: str = flag("flywheel-runs", "where runs and checkpoints go")
    max_failures: int = flag(2, "worker failures a run recovers from (-1: no limit)")
    ray_address: str | None = flag(None, "the Ray cluster; unset: a local one")
    mlflow: bool = flag(True, "log nothing to MLflow")


def add_run_flags(parser, defaults: RunConfig, **_ignored) -> None:
    """The run section's flags (on a parser or an argument group), with `defaults`."""
    add_flags(parser, type(defaults))


def check_run(run: RunConfig, min_batch: int = 1) -> None:
    """A one-line DatasetError for a run section that cannot run."""
    small = below_minimum(
        [
            ("--workers", run.workers, 1),
            ("--steps", run.steps, 1),
            ("--batch-size", run.batch_size, min_batch),
            ("--checkpoint-every", run.checkpoint_every, 1),
            ("--gpus-per-worker", run.gpus_per_worker, 0),
            ("--cpus-per-worker", run.cpus_per_worker or 1, 1),
        ]
    )
    if small:
        raise DatasetError(small[0])
    if not run.lr > 0:
        raise DatasetError(f"--lr {run.lr}: must be positive")
    if run.max_failures < -1:
        raise DatasetError(f"--max-failures {run.max_failures}: -1 (no limit) or more")
    if not 0 <= run.holdout < 1:
        raise DatasetError(f"--holdout {run.holdout}: a share of the episodes in [0, 1)")
    check_job_output(run.storage, "--storage")
