"""What every trial function shares: its typed setup, its folder, tasks outside its bundle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from pipelines.evaluation import EvalConfig
from pipelines.runtime.flags import config_from_flags
from pipelines.sweeps.config import TrialSettings
from pipelines.sweeps.space import trial_name


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares (Tune hands each its own parameter values)."""

    params: tuple[str, ...]  # the swept parameters
    trials_dir: str  # <sweep>/trials: one folder per trial, named after its values
    settings: TrialSettings

    def start(self, config: dict) -> tuple[dict, Path]:
        """(the trial's parameter values, its folder, made) from Tune's trial config."""
        params = {k: config[k] for k in self.params if k in config}
        folder = Path(self.trials_dir) / trial_name(params)
        folder.mkdir(parents=True, exist_ok=True)
        return params, folder


def quiet(*_args, **_kwargs) -> None:
    """An `out` that prints nothing (a trial's steps are silent)."""


def outside_trial(fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)` in a Ray task outside the trial's placement group.

    Tune places a trial in a placement group that captures the tasks it starts; the trial's
    bundle holds no CPU (`pipelines.sweeps.driver`), so the 1-CPU tasks of labeling and
    evaluation could never be placed in it. A task scheduled with the default strategy is not
    captured, and neither are the tasks it starts. It reserves no CPU itself: its tasks
    reserve theirs.
    """
    task = ray.remote(fn).options(num_cpus=0, scheduling_strategy="DEFAULT", max_retries=0)
    return ray.get(task.remote(*args, **kwargs))


def success_metrics(evaluated) -> dict:
    """An eval-policy result's first arm as the trial's report: success rate and its CI."""
    s = evaluated.arms[0].summary()
    return {
        "success_rate": s["success_rate"],
        "successes": s["successes"],
        "episodes": s["episodes"],
        "ci95_low": s["ci95"][0],
        "ci95_high": s["ci95"][1],
    }


def eval_config(checkpoint: str, settings: TrialSettings, folder: Path, **more) -> EvalConfig:
    """eval-policy's settings for a trial's checkpoint: the sweep's shared seeds, no videos,
    the report in the trial's folder (`more`: other fields, such as cfg_scale)."""
    return config_from_flags(
        EvalConfig,
        {
            "checkpoint": checkpoint,
            "episodes": settings.eval_episodes,
            "seed": settings.eval_seed,
            "videos": 0,
            "mlflow": False,
            "report": str(folder / "eval.json"),
            **more,
        },
    )
