"""What every job's command line shares: the parser, config files, and the one-line error path.

`JobParser` is the `argparse.ArgumentParser` of every `flywheel <job>`:

* every flag's `--help` shows its default;
* `--config FILE.yaml` reads the same fields as the flags (flag names with dashes or
  underscores, flat or nested in mappings such as a printed config's); flags given on the
  command line override the file;
* `--print-config` prints the effective config as YAML and exits: the job's config dataclass
  when the job builds one (`parse_config`), otherwise the flags' values. Its output is a valid
  `--config` file.

`run_job` runs a job's `run(config)` and turns the user's mistakes into one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.dataset import DatasetError
from pipelines.dataset.errors import one_line
from pipelines.runtime.cluster import ClusterError
from pipelines.runtime.flags import add_flags, is_flag_field, uses_flags
from pipelines.runtime.tracking import TrackingError

_OWN = ("config", "print_config", "help")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default, with or without a help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or action.dest in _OWN:
            return text
        if action.required or (not action.option_strings and action.nargs is None):
            return text  # a required flag or positional has no default
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        if "%(default)" in text or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._get_help_string(action):
            action.help = self._get_help_string(action)
        return super()._format_action(action)


class JobParser(argparse.ArgumentParser):
    """A job's flags, plus `--config FILE.yaml` and `--print-config` (module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._config_flags_added = False
        self._reads_config = False
        self._building = False
        self.print_requested = False

    # -- flags of our own, added last so they close the option list
    def _has_subcommands(self) -> bool:
        return any(isinstance(a, argparse._SubParsersAction) for a in self._actions)

    def _add_config_flags(self) -> None:
        if self._config_flags_added or self._has_subcommands():
            return
        self._config_flags_added = True
        g = self.add_argument_group("config")
        self._reads_config = "--config" not in self._option_string_actions
        if self._reads_config:  # a job with a --config of its own (sweep) keeps it
            g.add_argument(
                "--config",
                metavar="FILE.yaml",
                help="read these flags from a YAML file; flags on the command line override it",
            )
        g.add_argument(
            "--print-config",
            action="store_true",
            help="print the effective config as YAML (a valid --config file) and exit",
        )

    def format_help(self) -> str:
        self._add_config_flags()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_config_flags()
        return super().format_usage()

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        self._add_config_flags()
        args = list(sys.argv[1:] if args is None else args)
        if self._config_flags_added and self._reads_config:
            path = _config_path(args)
            if path is not None:
                self._apply_config_file(path)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        """The flags, without `--config`/`--print-config` (a job's `**vars(args)` stays valid);
        `--print-config` prints them and exits (`parse_config` prints the built config)."""
        ns = super().parse_args(args, namespace)
        self.print_requested = bool(getattr(ns, "print_config", False))
        if self._config_flags_added and hasattr(ns, "print_config"):
            del ns.print_config
        if self._reads_config and hasattr(ns, "config"):
            del ns.config  # a job's own --config (the sweep's) stays
        if self.print_requested and not self._building:
            print_yaml(flag_values(ns))
            sys.exit(0)
        return ns

    def parse_config(
        self,
        args: Sequence[str] | None,
        build: Callable[[argparse.Namespace], Any],
    ):
        """The parsed flags turned into the job's config by `build` (usually
        `config_from_flags`); `--print-config` prints that config and exits."""
        self._building = True
        try:
            ns = self.parse_args(args)
        finally:
            self._building = False
        try:
            config = build(ns)
        except (TypeError, ValueError) as e:
            self.error(str(e))
        if self.print_requested:
            print_yaml(plain(config))
            sys.exit(0)
        return config

    # -- the file
    def _apply_config_file(self, path: str) -> None:
        try:
            text = Path(path).read_text()
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as e:
            self.error(f"--config {path}: cannot be read ({e.__class__.__name__})")
        except yaml.YAMLError as e:
            self.error(f"--config {path}: not YAML ({str(e).splitlines()[0]})")
        if data is None:
            return
        if not isinstance(data, dict):
            self.error(f"--config {path}: must be a mapping of flag names to values")
        by_dest = {a.dest: a for a in self._actions if a.dest not in _OWN}
        defaults: dict[str, Any] = {}
        for key, value in _flatten(data):
            dest = key.replace("-", "_")
            action = by_dest.get(dest)
            if action is None and f"no_{dest}" in by_dest and isinstance(value, bool):
                action, value = by_dest[f"no_{dest}"], not value
            if action is None:
                self.error(f"--config {path}: unknown field {key!r} (see --help for the flags)")
            defaults[action.dest] = self._coerce(path, key, action, value)
            action.required = False  # the file gives it
            if not action.option_strings:  # a positional given by the file
                action.nargs = "?" if action.nargs is None else action.nargs
        self.set_defaults(**defaults)

    def _coerce(self, path: str, key: str, action: argparse.Action, value: Any) -> Any:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                self.error(f"--config {path}: {key} must be true or false, not {value!r}")
            return value
        if value is None:
            return None
        many = action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction)
        if many:
            return [
                self._one(path, key, action, v)
                for v in (value if isinstance(value, list) else [value])
            ]
        if isinstance(value, list):  # one flag value written as a list: "3,17,40"
            value = ",".join(str(v) for v in value)
        return self._one(path, key, action, value)

    def _one(self, path: str, key: str, action: argparse.Action, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            self.error(f"--config {path}: {key} must be a single value")
        if action.type is not None and not isinstance(value, bool):
            try:
                value = action.type(str(value))
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                self.error(f"--config {path}: {key}: {e}")
        elif isinstance(value, (int, float)) and action.type is None:
            value = str(value) if not isinstance(value, bool) else value
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            self.error(f"--config {path}: {key} must be one of {choices}, not {value!r}")
        return value


def _config_path(args: list[str]) -> str | None:
    path = None
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
    return path


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        if not isinstance(key, str):
            raise SystemExit(f"--config: field names must be text, not {key!r}")
        if isinstance(value, dict):
            yield from _flatten(value, key)
        else:
            yield key, value


def flag_values(ns: argparse.Namespace) -> dict:
    return {k.replace("_", "-"): plain(v) for k, v in vars(ns).items() if k not in _OWN}


def plain(value: Any) -> Any:
    """A config (nested dataclasses) as YAML-ready mappings, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not uses_flags(cls)
            or is_flag_field(cls, f.name)
            or dataclasses.is_dataclass(getattr(value, f.name))
        }
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_yaml(data: dict) -> None:
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def job_error(e: BaseException) -> Exception | None:
    """What a job's CLI reports in one line (exit code 2) for an exception from its `run()`:
    the user's mistake (a dataset, a cluster address, a tracking URI), raised in the driver or
    inside Ray Train's workers; None for anything else, which the CLI lets through."""
    if isinstance(e, (DatasetError, ClusterError, TrackingError)):
        cause = getattr(e, "cause", None)  # a Ray task's error (ray::f() traceback...): its own
        return cause if isinstance(cause, Exception) else e
    return dataset_error(e)


def dataset_error(e: BaseException) -> DatasetError | None:
    """The DatasetError behind an exception, looking inside Ray Train's worker failures."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DatasetError):
            return e
        for failure in (getattr(e, "worker_failures", None) or {}).values():  # Ray Train's
            found = dataset_error(failure)
            if found is not None:
                return found
        e = e.__cause__ or e.__context__ or getattr(e, "cause", None)
    return None


def run_job(run: Callable, cfg, prog: str, errors: tuple[type[BaseException], ...] = ()):
    """`run(cfg)`, or None after printing the user's mistake (`job_error`, or one of the job's
    own `errors`) in one line on stderr: what every job's CLI does before it exits with 2."""
    try:
        return run(cfg)
    except Exception as e:  # the user's mistake, in the driver or the workers: one line
        cause = e if isinstance(e, errors) else job_error(e)
        if cause is None:
            raise
        print(f"{prog}: error: {one_line(cause)}", file=sys.stderr)
        return None


def job_parser(prog: str, doc: str, config: type, skip: tuple[str, ...] = ()) -> JobParser:
    """A job's parser: its docstring's first paragraph, and its config's flags."""
    parser = JobParser(prog=prog, description=doc.split("\n\n")[0])
    add_flags(parser, config, skip=skip)
    return parser


def job_main(
    argv: Sequence[str] | None,
    prog: str,
    parser: JobParser,
    config: type,
    run: Callable,
    report: Callable[[Any, Any], Iterable[str]],
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Every job's `main`: flags (and `--config`) -> config -> `run(config)` -> the lines
    `report(config, result)` gives on stdout, exit 0; a user's mistake is one line, exit 2."""
    cfg = parser.parse_config(argv, config.from_flags)
    result = run_job(run, cfg, prog, errors)
    if result is None:
        return 2
    for line in report(cfg, result):
        print(line)
    return 0


@dataclass(frozen=True)
class Job:
    """A job's command line in one place: its parser (the config's flags) and its `main`.

    A job module says `JOB = Job("label", __doc__, TheConfig, run, report)` and exposes
    `build_parser = JOB.build_parser` and `main = JOB.main` (what `flywheel <job>` calls).
    """

    name: str  # the subcommand: `flywheel <name>`
    doc: str
    config: type
    run: Callable
    report: Callable[[Any, Any], Iterable[str]]
    errors: tuple[type[BaseException], ...] = ()

    def build_parser(self, prog: str) -> JobParser:
        return job_parser(prog, self.doc, self.config)

    def main(self, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
        prog = prog or f"flywheel {self.name}"
        parser = self.build_parser(prog)
        return job_main(argv, prog, parser, self.config, self.run, self.report, self.errors)
