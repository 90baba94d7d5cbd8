"""What every kind of sweep is: its inputs, parameters, metric, resources and trial function.

A kind is an object (`SweepKind`); `pipelines.sweeps.kinds` lists them. The driver asks the
kind for everything that differs between kinds, never for its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.space import Param

# A trial function reserves no CPU (see `pipelines.sweeps.driver`): only a token of memory.
TOKEN_MEMORY = {"memory": 32 * 2**20}


class SweepKind:
    """One kind of sweep. Subclasses set the class attributes and `trainable`."""

    name: str
    inputs: tuple[str, ...] = ()  # the positional inputs (DATASET, CHECKPOINT ...)
    params: tuple[Param, ...] = ()  # the parameters it may sweep (each a flag)
    required: str  # the parameter every sweep of this kind must sweep
    metric: str  # the sweep's metric (higher is better)
    metrics: tuple[str, ...] = ()  # the columns of the results table
    spec_fields: tuple[str, ...] = ()  # the settings that define its trials (sweep.json)
    uses_ray_data = False  # whether its trials run Ray Data
    trial_resources: dict = TOKEN_MEMORY  # what a trial's own function reserves

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def spec(self, cfg: SweepConfig) -> dict:
        """What defines the sweep's trials (a rerun under the same name must keep it)."""
        spec = {
            "kind": self.name,
            "inputs": [str(Path(p).resolve()) for p in cfg.inputs],
            "space": cfg.space,
        }
        for key in self.spec_fields:
            spec[key] = getattr(cfg.trial, key) if hasattr(cfg.trial, key) else getattr(cfg, key)
        return spec

    def trial_needs(self, cfg: SweepConfig) -> dict[str, float]:
        """What one trial's largest phase reserves on the cluster (CPU, GPU)."""
        return {"CPU": 1.0}

    def check(self, cfg: SweepConfig) -> None:
        """The kind's own checks of the settings that need no Ray (one-line DatasetErrors)."""

    def check_inputs(self, cfg: SweepConfig) -> None:
        """The kind's checks of its inputs' contents, before Ray starts."""

    def schedule(self, cfg: SweepConfig) -> tuple[int, str, str]:
        """(reports per trial, the metric ASHA compares, "max" or "min")."""
        return 1, self.metric, "max"

    def trainable(self, cfg: SweepConfig, params: list[str], out: Callable) -> Callable:
        """The trial function, its arguments bound (`ray.tune.with_parameters`)."""
        raise NotImplementedError
