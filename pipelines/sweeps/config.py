"""A sweep's settings (nested dataclasses) and the sweep YAML file (`--config`)."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import flag, flag_spec, section
from pipelines.sweeps.space import parse_values


@dataclass
class TrialSettings:
    """Every trial's budget: awbc's train-policy and eval-policy settings (hilserl: the eval)."""

    steps: int = flag(300, "training steps per trial")
    checkpoint_every: int | None = flag(  # each report a Tune iteration
        None, "steps between reports (default: steps / 5)"
    )
    workers: int = flag(1, "DDP workers per trial")
    cpus_per_worker: int = flag(1, "CPUs of each worker")
    gpus_per_worker: float = flag(0.0, "GPUs of each worker")
    batch_size: int = flag(32, "batch size")
    image_size: int = flag(64, "image size")
    eval_episodes: int = flag(20, "evaluation episodes per trial")
    eval_seed: int = flag(1000, "first evaluation seed, every trial's")

    @property
    def every(self) -> int:
        return self.checkpoint_every or max(1, self.steps // 5)


@dataclass
class TuneSettings:
    """Ray Tune's: how many trials at once, ASHA's grace period and reduction factor."""

    max_concurrent_trials: int | None = flag(None, "default: the cluster")
    grace_period: int = flag(1, "ASHA's")
    reduction_factor: int = flag(3, "ASHA's")


# Fields the sweep file sets (`space` also the parameters' flags), no flag of their own: their
# `flag()` (hidden, skipped by `add_flags`) makes `--print-config` print them.
FILE_ONLY = ("space", "hilserl")


@dataclass
class SweepConfig:
    """`flywheel sweep`'s config. Its flags default to None (`pipelines.sweeps.flags`): a flag
    given overrides the sweep file, whose values override these defaults."""

    kind: str = flag(help="what to sweep: awbc, reward-threshold, hilserl", positional=True)
    inputs: list[str] = flag(
        default_factory=list,
        help="awbc: DATASET; reward-threshold: CHECKPOINT DATASET; hilserl: none",
        positional=True,
        nargs="*",
    )
    space: dict[str, list] = flag(default_factory=dict, help="the swept values", hidden=True)
    name: str | None = flag(None, "the sweep's name (default sweep-<kind>)")
    storage: str = flag("flywheel-runs", "where sweeps go")
    ray_address: str | None = flag(None, "a Ray cluster (default: start one)")
    mlflow: bool = flag(True, "log nothing to MLflow")
    trial: TrialSettings = section(
        TrialSettings, "every trial (awbc: train-policy and eval-policy settings)"
    )
    tune: TuneSettings = section(TuneSettings, "Tune")
    hilserl: dict = flag(  # the HIL-SERL job's flag names and values
        default_factory=dict, help="hilserl: options of every trial's run", hidden=True
    )

    @property
    def sweep_name(self) -> str:
        return self.name or f"sweep-{self.kind}"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve() / "sweeps" / self.sweep_name


def _options(cls: type = SweepConfig) -> dict[str, type]:
    """name -> value type of every option a sweep file may set besides the swept parameters:
    the config's flags (its sections' too), without the positionals and switches."""
    found: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            found.update(_options(kind))
            continue
        spec = flag_spec(cls, f.name)
        if spec is None or spec.positional or f.name == "space" or kind is bool:
            continue
        if type(None) in typing.get_args(kind):  # `int | None`: int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        found[f.name] = typing.get_origin(kind) or kind
    return found


# Options a --config YAML may set besides the swept parameters (the flags' names; each the
# field of that name in SweepConfig or one of its sections).
OPTIONS = _options()


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
