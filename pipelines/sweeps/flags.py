"""`flywheel sweep`'s flags and the SweepConfig they give: the YAML file's settings, flags
overriding them.

The flags are `SweepConfig`'s fields (`pipelines.runtime.flags`), each defaulting to None so
that a flag given overrides the sweep file (`--config`) and an absent one leaves the file's
value, else the field's default (which its help shows). The swept parameters' flags come from
the kinds' `Param`s.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from pipelines.dataset import DatasetError
from pipelines.runtime.flags import add_flags, config_from_flags
from pipelines.sweeps.config import FILE_ONLY, OPTIONS, SweepConfig, read_config_file
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.kinds import KINDS, kind_named
from pipelines.sweeps.space import parse_values, short_value


def add_sweep_flags(parser: argparse.ArgumentParser, kinds: Mapping[str, SweepKind]) -> None:
    """The sweep's flags: its own `--config` file, the kinds' parameters, then SweepConfig's."""
    parser.add_argument(  # the sweep file, not a setting (JobParser then adds only --print-config)
        "--config",
        dest="sweep_file",
        default=None,
        metavar="FILE.yaml",
        help="a YAML file: parameters and options; flags on the command line override it",
    )
    g = parser.add_argument_group(
        "search space (comma-separated values; every combination a trial)"
    )
    for name, names in _params(kinds).items():
        g.add_argument(
            "--" + name.replace("_", "-"),
            default=argparse.SUPPRESS,  # absent: the --config file's values, if any
            metavar="V1,V2,...",
            help=f"the values to try ({', '.join(names)})",
        )
    add_flags(parser, SweepConfig, skip=FILE_ONLY)
    for action in parser._actions:
        if action.dest in OPTIONS and action.default is not None:
            action.help = f"{action.help} (default {short_value(action.default)})"
            action.default = None  # absent: the file's value, else SweepConfig's


def _params(kinds: Mapping[str, SweepKind]) -> dict[str, list[str]]:
    """Every sweepable parameter's name -> the kinds that sweep it."""
    found: dict[str, list[str]] = {}
    for kind in kinds.values():
        for param in kind.params:
            found.setdefault(param.name, []).append(kind.name)
    return found


def config_from_args(
    args: argparse.Namespace, kinds: Mapping[str, SweepKind] = KINDS
) -> SweepConfig:
    """The SweepConfig of parsed flags: the YAML file's settings, flags overriding them."""
    kind = kind_named(args.kind, kinds)
    path = args.sweep_file  # --config
    space, options = read_config_file(path, kind) if path else ({}, {})
    values = vars(args)
    for name in _params(kinds):
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
