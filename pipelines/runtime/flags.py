"""A job's flags are its config's fields: declared once, on the (nested) config dataclass.

    @dataclass
    class PolicyRunConfig:
        steps: int = flag(3000, "training steps (a rerun with more resumes)")
        storage: str = flag("flywheel-runs", "where runs and checkpoints go")
        mlflow: bool = flag(True, "log the run to MLflow")   # the flag is --no-mlflow

    @dataclass
    class PolicyTrainConfig(FlagConfig):
        dataset: str = flag(help="a LeRobot dataset", positional=True)
        run: PolicyRunConfig = section(PolicyRunConfig, "run")

`add_flags(parser, PolicyTrainConfig)` adds `dataset`, `--steps`, `--storage`, `--no-mlflow`
(a section's fields under its title), each with its help, type, choices and default;
`config_from_flags(PolicyTrainConfig, args)` (or `PolicyTrainConfig.from_flags(...)`) builds the
nested config back from the parsed values. A bool field is a switch: `--<name>` when it
defaults to False, `--no-<name>` when it defaults to True, both with `both=True`; `append=True`
makes a list field's flag repeatable (`--camera A --camera B`). A field without `flag()` is not a
flag (a value the job derives), and `--print-config` leaves it out.

A subclass may give a field another default without repeating its help: `steps: int = 1000`
in a subclass keeps the base class's `flag()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

FLAG = "flag"
SECTION = "section"


@dataclass(frozen=True)
class Flag:
    help: str = ""
    choices: tuple | None = None
    type: Any = None
    metavar: str | None = None
    positional: bool = False
    option: str | None = None  # the flag's name when it is not the field's
    nargs: str | None = None
    hidden: bool = False  # read (from flags or --config) but not shown in --help
    append: bool = False  # repeatable: each use adds one value to the list
    both: bool = False  # a switch with both forms, --x and --no-x


def flag(
    default: Any = MISSING,
    help: str = "",
    *,
    default_factory: Any = MISSING,
    choices=None,
    type=None,
    metavar: str | None = None,
    positional: bool = False,
    option: str | None = None,
    nargs: str | None = None,
    hidden: bool = False,
    append: bool = False,
    both: bool = False,
):
    """A config field that is also a command-line flag (module docstring); `append`: a
    repeatable flag whose uses collect into the field's list."""
    spec = Flag(
        help,
        tuple(choices) if choices is not None else None,
        type,
        metavar,
        positional,
        option,
        nargs,
        hidden,
        append,
        both,
    )
    return field(default=default, default_factory=default_factory, metadata={FLAG: spec})


def section(cls: type, title: str | None = None):
    """A nested config whose fields are flags too, under `title` in --help."""
    return field(default_factory=cls, metadata={SECTION: title})


def flag_spec(cls: type, name: str) -> Flag | None:
    """The `flag()` of field `name`, looked up through the base classes (a subclass that only
    changes a default keeps its base's flag)."""
    for klass in cls.__mro__:
        fields = getattr(klass, "__dataclass_fields__", {})
        if name in fields and FLAG in fields[name].metadata:
            return fields[name].metadata[FLAG]
    return None


def section_title(cls: type, name: str) -> str | None:
    for klass in cls.__mro__:
        fields = getattr(klass, "__dataclass_fields__", {})
        if name in fields and SECTION in fields[name].metadata:
            return fields[name].metadata[SECTION]
    return None


def _base_type(annotation: Any) -> Any:
    """`int | None` -> int; `list[int]` -> list."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _base_type(args[0])
    return origin or annotation


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def add_flags(parser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add every `flag()` field of the config dataclass `cls` (and of its sections) to
    `parser`; a section with a title becomes an argument group."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(kind):
            title = section_title(cls, f.name)
            group = parser.add_argument_group(title) if title else parser
            add_flags(group, kind, skip=skip)
            continue
        spec = flag_spec(cls, f.name)
        if spec is None:
            continue
        _add(parser, f, _base_type(kind), spec)


def _add(parser, f: dataclasses.Field, kind: Any, spec: Flag) -> None:
    default = _default(f)
    help_text = argparse.SUPPRESS if spec.hidden else spec.help
    name = spec.option or f.name.replace("_", "-")
    if spec.positional:
        kwargs: dict[str, Any] = {"help": help_text}
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        if spec.nargs:
            kwargs["nargs"] = spec.nargs
        if default is not MISSING:
            kwargs.setdefault("nargs", "?")
            kwargs["default"] = default
        if spec.type is not None or kind in (int, float):
            kwargs["type"] = spec.type or kind
        parser.add_argument(f.name, **kwargs)
        return
    if kind is bool and spec.type is None:
        if spec.both:
            parser.add_argument(
                f"--{name}",
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif default is True:
            parser.add_argument(
                f"--no-{name}", dest=f"no_{f.name}", action="store_true", help=help_text
            )
        else:
            parser.add_argument(f"--{name}", dest=f.name, action="store_true", help=help_text)
        return
    kwargs = {"dest": f.name, "help": help_text}
    if default is not MISSING:
        kwargs["default"] = default
    else:
        kwargs["required"] = True
    converter = spec.type or (kind if kind in (int, float) else None)
    if converter is not None:
        kwargs["type"] = converter
    if spec.choices is not None:
        kwargs["choices"] = spec.choices
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.append:
        kwargs["action"] = "append"
        kwargs["default"] = argparse.SUPPRESS  # unset: the field's default (an empty list)
    elif spec.nargs:
        kwargs["nargs"] = spec.nargs
    elif kind is list and spec.type is None:
        kwargs["nargs"] = "*"
    parser.add_argument(f"--{name}", **kwargs)


def is_flag_field(cls: type, name: str) -> bool:
    """Whether `cls.name` is set by a flag (so `--print-config` shows it)."""
    return flag_spec(cls, name) is not None


def uses_flags(cls: type) -> bool:
    """Whether the config declares its flags with `flag()` (then only they are printed)."""
    return any(
        flag_spec(cls, f.name) is not None or section_title(cls, f.name) is not None
        for f in dataclasses.fields(cls)
    )


def config_from_flags(cls, ns: argparse.Namespace | dict, **given):
    """An instance of the (nested) config dataclass `cls` from parsed flags: each field takes
    the flag of its name (`no_<name>` flags negated); a field whose type is a dataclass is
    built the same way from the same flags. `given` overrides fields of the top level."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in given:
            kwargs[f.name] = given[f.name]
            continue
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = config_from_flags(kind, values)
        elif f.name in values:
            spec = flag_spec(cls, f.name)
            if values[f.name] is None and spec is not None and spec.append:
                continue  # a repeatable flag not given: the field's default
            kwargs[f.name] = values[f.name]
        elif f"no_{f.name}" in values:
            kwargs[f.name] = not values[f"no_{f.name}"]
    return cls(**kwargs)


class FlagConfig:
    """Mixin of a (nested) config dataclass: built from flat, flag-named values."""

    @classmethod
    def from_flags(cls, ns: argparse.Namespace | dict | None = None, **values):
        """`config_from_flags(cls, ...)` from a namespace and/or keyword values; a TypeError
        names a value that no field of the config (or of its sections) takes."""
        flat = {**(vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns or {})), **values}
        known = _field_names(cls)
        unknown = [
            k for k in flat if k not in known and not (k.startswith("no_") and k[3:] in known)
        ]
        if unknown:
            raise TypeError(f"{cls.__name__}: no field {unknown[0]!r}")
        return config_from_flags(cls, flat)


def _field_names(cls) -> set[str]:
    hints = typing.get_type_hints(cls)
    names = set()
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind):
            names |= _field_names(kind)
        else:
            names.add(f.name)
    return names


def below_minimum(bounds) -> list[str]:
    """`--flag VALUE: at least LEAST` for each (flag, value, least) whose value is below it."""
    return [f"{flag} {value}: at least {least}" for flag, value, least in bounds if value < least]
