"""The kinds of sweep, by name, and the checks of a sweep's settings that need no Ray."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import below_minimum
from pipelines.sweeps.awbc_sweep import AwbcSweep
from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.hilserl_sweep import HilserlSweep
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.threshold_sweep import ThresholdSweep

# The kinds this family runs by itself; `hilserl` needs HIL-SERL's runner (hilserl_sweep.py).
KINDS: dict[str, SweepKind] = {k.name: k for k in (AwbcSweep(), ThresholdSweep(), HilserlSweep())}


def kind_named(name: str, kinds: Mapping[str, SweepKind] = KINDS) -> SweepKind:
    kind = kinds.get(name)
    if kind is None:
        raise DatasetError(f"kind {name!r}: one of {', '.join(kinds)}")
    return kind


def trial_needs(cfg: SweepConfig, kinds: Mapping[str, SweepKind] = KINDS) -> dict[str, float]:
    """What one trial's largest phase reserves on the cluster (CPU, GPU)."""
    return kind_named(cfg.kind, kinds).trial_needs(cfg)


def check_config(cfg: SweepConfig, kinds: Mapping[str, SweepKind] = KINDS) -> SweepKind:
    """Every check of the sweep's settings that needs no Ray (one-line DatasetErrors)."""
    kind = kind_named(cfg.kind, kinds)
    if len(cfg.inputs) != len(kind.inputs):
        want = " ".join(kind.inputs) or "no positional inputs"
        raise DatasetError(
            f"sweep {kind.name}: takes {want}, got {len(cfg.inputs)} ({' '.join(cfg.inputs)})"
        )
    unknown = [k for k in cfg.space if kind.param(k) is None]
    if unknown:
        raise DatasetError(f"--{unknown[0].replace('_', '-')}: not a parameter of {kind.name}")
    if kind.required not in cfg.space:
        flag = kind.param(kind.required).flag
        raise DatasetError(f"{flag}: a {kind.name} sweep needs values (e.g. {flag} 0.1,0.5)")
    for name, values in cfg.space.items():
        if not values:
            raise DatasetError(f"{kind.param(name).flag}: no values")
    t, tune = cfg.trial, cfg.tune
    small = below_minimum(
        [
            ("--steps", t.steps, 1),
            ("--checkpoint-every", t.every, 1),
            ("--workers", t.workers, 1),
            ("--cpus-per-worker", t.cpus_per_worker, 1),
            ("--batch-size", t.batch_size, 1),
            ("--eval-episodes", t.eval_episodes, 1),
            ("--eval-seed", t.eval_seed, 0),
            ("--grace-period", tune.grace_period, 1),
            ("--reduction-factor", tune.reduction_factor, 2),
            ("--max-concurrent-trials", tune.max_concurrent_trials or 1, 1),
            ("--gpus-per-worker", t.gpus_per_worker, 0),
        ]
    )
    if small:
        raise DatasetError(small[0])
    if not cfg.sweep_name or "/" in cfg.sweep_name or cfg.sweep_name in (".", ".."):
        raise DatasetError(f"--name {cfg.sweep_name!r}: a folder name")
    for label, path in zip(kind.inputs, cfg.inputs, strict=True):
        if not Path(path).exists():
            raise DatasetError(f"{label} {path}: no such file or folder")
    kind.check(cfg)
    return kind


def check_spec(folder: Path, spec: dict) -> bool:
    """True if the sweep exists with this spec; a DatasetError if it exists with another."""
    path = folder / "sweep.json"
    if not path.exists():
        return False
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable ({e})") from None
    differ = [
        f"{k} {previous.get(k)!r} (this command: {v!r})"
        for k, v in spec.items()
        if previous.get(k) != v
    ]
    if differ:
        raise DatasetError(
            f"{folder}: sweep {folder.name!r} was started with other settings: "
            f"{'; '.join(differ)}; choose another --name"
        )
    return True
