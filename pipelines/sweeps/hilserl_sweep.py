"""The `hilserl` sweep: each trial runs HIL-SERL with its `bc_weight` / `online_ratio`, then
evaluates its policy with eval-policy on the shared seeds. The metric is the success rate.

HIL-SERL's driver lives beside its actors (a floor above this family), so the kind is given
it: `HilserlSweep(HilserlRunner(config_class, run))`, as the `flywheel sweep` job does. A
`HilserlSweep()` without one refuses to run ("this build has no HIL-SERL job").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray.tune

import pipelines.rl.eval_loader  # noqa: F401  (registers the hilserl kind with eval-policy)
from pipelines.dataset import DatasetError
from pipelines.evaluation import run as evaluate_policies
from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.space import Param
from pipelines.sweeps.trials import (
    TrialSetup,
    eval_config,
    outside_trial,
    quiet,
    success_metrics,
)

# The options of a HIL-SERL run that its trials set themselves.
OWNED = {"bc_weight", "online_ratio", "name", "storage", "mlflow", "ray_address", "quiet"}


@dataclass(frozen=True)
class HilserlRunner:
    """HIL-SERL's config class (a `FlagConfig`: `from_flags(**flat)`) and `run(config)` (its
    result has `.checkpoint` and `.status`)."""

    config_class: type
    run: Callable


@dataclass(frozen=True)
class HilserlTrialSetup(TrialSetup):
    runner: HilserlRunner | None = None
    run_config: Any = None  # the runner's config: every trial's, before its own values


def with_values(config, values: dict):
    """A copy of a (nested) config dataclass with the fields of these names set."""
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in values:
            changes[f.name] = values[f.name]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = with_values(value, values)
    return dataclasses.replace(config, **changes)


class HilserlSweep(SweepKind):
    name = "hilserl"
    params = (Param("bc_weight", float, 0), Param("online_ratio", float, 0, 1))
    required = "bc_weight"
    metric = "success_rate"
    metrics = ("success_rate", "successes", "episodes", "ci95_low", "ci95_high", "env_steps")
    spec_fields = ("hilserl", "eval_episodes", "eval_seed")

    def __init__(self, runner: HilserlRunner | None = None):
        self.runner = runner

    def trial_needs(self, cfg: SweepConfig) -> dict[str, float]:
        # the collectors and the learner, each busy on its own core
        need = {"CPU": float(int(cfg.hilserl.get("collectors", 1)) + 1)}
        if cfg.trial.gpus_per_worker:
            need["GPU"] = float(cfg.trial.gpus_per_worker)
        return need

    def check(self, cfg: SweepConfig) -> None:
        if self.runner is None:
            raise DatasetError("sweep hilserl: this build has no HIL-SERL job (pipelines.hilserl)")
        for key, value in cfg.hilserl.items():
            if key in OWNED or not self._takes(key, value):
                raise DatasetError(f"hilserl option {key!r}: not an option a trial may set")

    def _takes(self, key: str, value) -> bool:
        """Whether HIL-SERL's config has a field of this name (its sections' included)."""
        try:
            self.runner.config_class.from_flags(**{key: value})
        except TypeError:
            return False
        return True

    def run_config(self, cfg: SweepConfig):
        """The HIL-SERL config every trial starts from: the sweep's options, quiet, no MLflow."""
        values = {**cfg.hilserl, "name": "hilserl", "mlflow": False, "quiet": True}
        return self.runner.config_class.from_flags(**values)

    def trainable(self, cfg: SweepConfig, params: list[str], out: Callable) -> Callable:
        setup = HilserlTrialSetup(
            tuple(params),
            str(cfg.sweep_dir / "trials"),
            cfg.trial,
            runner=self.runner,
            run_config=self.run_config(cfg),
        )
        return ray.tune.with_parameters(hilserl_trial, setup=setup)


def evaluate_hilserl(cfg):
    """eval-policy on a HIL-SERL checkpoint, in a task whose process imported this module (so
    the hilserl checkpoint loader is registered there)."""
    return evaluate_policies(cfg, out=quiet)


def hilserl_trial(config: dict, setup: HilserlTrialSetup) -> None:
    """One HIL-SERL trial: a run with the trial's bc_weight / online_ratio, then eval-policy."""
    params, folder = setup.start(config)
    run_config = with_values(
        setup.run_config,
        {**{k: float(v) for k, v in params.items()}, "storage": str(folder / "runs")},
    )
    # its learner may ask for a GPU, which the trial's bundle lacks
    result = outside_trial(setup.runner.run, run_config)
    evaluated = outside_trial(
        evaluate_hilserl, eval_config(result.checkpoint, setup.settings, folder)
    )
    ray.tune.report(
        {
            **success_metrics(evaluated),
            "env_steps": int(result.status.get("env_steps", 0)) if result.status else 0,
            "checkpoint": result.checkpoint,
        }
    )
