"""A sweep's settings (nested dataclasses) and the sweep YAML file (`--config`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.dataset import DatasetError
from pipelines.sweeps.space import parse_values


@dataclass
class TrialSettings:
    """Every trial's budget: awbc's train-policy and eval-policy settings (hilserl: the eval)."""

    steps: int = 300
    checkpoint_every: int | None = None  # default: steps / 5 (each report a Tune iteration)
    workers: int = 1
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    batch_size: int = 32
    image_size: int = 64
    eval_episodes: int = 20
    eval_seed: int = 1000

    @property
    def every(self) -> int:
        return self.checkpoint_every or max(1, self.steps // 5)


@dataclass
class TuneSettings:
    """Ray Tune's: how many trials at once, ASHA's grace period and reduction factor."""

    max_concurrent_trials: int | None = None  # default: what the cluster holds
    grace_period: int = 1
    reduction_factor: int = 3


@dataclass
class SweepConfig:
    kind: str = ""
    inputs: list[str] = field(default_factory=list)
    space: dict[str, list] = field(default_factory=dict)
    name: str | None = None
    storage: str = "flywheel-runs"
    ray_address: str | None = None
    mlflow: bool = True
    trial: TrialSettings = field(default_factory=TrialSettings)
    tune: TuneSettings = field(default_factory=TuneSettings)
    # hilserl: options of every trial's run (the HIL-SERL job's flag names and values)
    hilserl: dict = field(default_factory=dict)

    @property
    def sweep_name(self) -> str:
        return self.name or f"sweep-{self.kind}"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve() / "sweeps" / self.sweep_name


# Options a --config YAML may set besides the swept parameters (the flags' names; each the
# field of that name in SweepConfig or one of its sections).
OPTIONS = {
    "name": str,
    "storage": str,
    "steps": int,
    "checkpoint_every": int,
    "workers": int,
    "cpus_per_worker": int,
    "gpus_per_worker": float,
    "batch_size": int,
    "image_size": int,
    "eval_episodes": int,
    "eval_seed": int,
    "hilserl": dict,
    "max_concurrent_trials": int,
    "grace_period": int,
    "reduction_factor": int,
    "ray_address": str,
}


# The mappings of a printed config (`--print-config`) whose keys count as top-level keys.
SECTIONS = ("space", "trial", "tune")
_WHAT = {
    dict: "a mapping",
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list of paths",
}


def read_config_file(path: str | os.PathLike, kind) -> tuple[dict[str, list], dict]:
    """(search space, options) of a sweep YAML file; one-line DatasetErrors naming the file.

    Keys: the kind's parameters (a list of values, one value or "a,b,c"), the options of
    OPTIONS (flag names, `-` or `_`), and optionally `kind` (must match the command's). The
    output of `--print-config` reads back too: its `space`, `trial` and `tune` mappings hold
    such keys, `inputs` and `mlflow` are read, and a null value is the default.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DatasetError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise DatasetError(f"{path}: not valid YAML{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = type(data).__name__
        raise DatasetError(f"{path}: a mapping of parameters and options, not a {what}")
    items = []
    for raw_key, value in data.items():
        if str(raw_key) in SECTIONS and isinstance(value, dict):
            items += value.items()
        else:
            items.append((raw_key, value))
    space, options = {}, {}
    for raw_key, value in items:
        key = str(raw_key).replace("-", "_")
        if key == "kind":
            if value != kind.name:
                raise DatasetError(f"{path}: kind {value!r}, but the command sweeps {kind.name!r}")
            continue
        param = kind.param(key)
        if param is not None:
            space[key] = parse_values(param, value, f"{path}: {raw_key}")
            continue
        want = OPTIONS.get(key) or {"inputs": list, "mlflow": bool}.get(key)
        if want is None:
            known = [p.name for p in kind.params] + sorted(OPTIONS)
            raise DatasetError(
                f"{path}: unknown key {raw_key!r} for a {kind.name} sweep "
                f"(known: kind, {', '.join(known)})"
            )
        if value is None:
            continue  # the default
        if want is bool:
            ok = isinstance(value, bool)
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif want is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, want) and not isinstance(value, bool)
        if not ok:
            raise DatasetError(f"{path}: {raw_key} {value!r} is not {_WHAT[want]}")
        options[key] = float(value) if want is float else value
    return space, options
