"""A SweepConfig from the `flywheel sweep` flags: the YAML file's settings, flags overriding."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import config_from_flags
from pipelines.sweeps.config import OPTIONS, SweepConfig, read_config_file
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.kinds import KINDS, kind_named
from pipelines.sweeps.space import parse_values


def config_from_args(
    args: argparse.Namespace, kinds: Mapping[str, SweepKind] = KINDS
) -> SweepConfig:
    """The SweepConfig of parsed flags: the YAML file's settings, flags overriding them."""
    kind = kind_named(args.kind, kinds)
    path = args.sweep_file  # --config
    space, options = read_config_file(path, kind) if path else ({}, {})
    values = vars(args)
    for name in dict.fromkeys(p.name for k in kinds.values() for p in k.params):
        raw = values.get(name)
        if raw is None:
            continue
        param = kind.param(name)
        if param is None:
            flag = "--" + name.replace("_", "-")
            raise DatasetError(f"{flag}: not a parameter of a {kind.name} sweep")
        space[name] = parse_values(param, raw)
    for key in OPTIONS:
        if values.get(key) is not None:
            options[key] = values[key]
    ordered = {p.name: space[p.name] for p in kind.params if p.name in space}
    inputs = list(args.inputs) or options.pop("inputs", [])
    mlflow = options.pop("mlflow", True) and not args.no_mlflow
    options.pop("inputs", None)
    return config_from_flags(
        SweepConfig, options, kind=kind.name, inputs=inputs, space=ordered, mlflow=mlflow
    )
