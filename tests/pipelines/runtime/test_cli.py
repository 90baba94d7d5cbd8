"""The command line every `flywheel <job>` shares: defaults in --help, --config, --print-config."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field

import pytest
import yaml

from pipelines.cli import COMMANDS
from pipelines.runtime.cli import JobParser
from pipelines.runtime.flags import config_from_flags


@dataclass
class Model:
    encoder: str = "small"
    image_size: int = 64


@dataclass
class Job:
    dataset: str
    steps: int = 10
    mlflow: bool = True
    model: Model = field(default_factory=Model)


def job_parser() -> JobParser:
    p = JobParser(prog="flywheel job")
    p.add_argument("dataset")
    p.add_argument("--steps", type=int, default=10, help="training steps")
    p.add_argument("--encoder", choices=["small", "big"], default="small")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--no-mlflow", action="store_true")
    return p


def build(args: argparse.Namespace) -> Job:
    return config_from_flags(Job, args)


def test_a_nested_config_is_built_from_the_flags():
    cfg = job_parser().parse_config(["d", "--steps", "5", "--encoder", "big", "--no-mlflow"], build)
    assert cfg == Job("d", steps=5, mlflow=False, model=Model(encoder="big"))


def test_a_config_file_sets_the_flags_and_the_command_line_overrides_it(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("dataset: from-file\nsteps: 7\nmodel:\n  image-size: 32\n  encoder: big\n")
    cfg = job_parser().parse_config(["--config", str(path), "--steps", "9"], build)
    assert cfg == Job("from-file", steps=9, model=Model(encoder="big", image_size=32))


def test_print_config_prints_a_file_that_config_reads_back(tmp_path, capsys):
    argv = ["d", "--steps", "3", "--image-size", "16", "--no-mlflow"]
    with pytest.raises(SystemExit) as e:
        job_parser().parse_config([*argv, "--print-config"], build)
    assert e.value.code == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["model"] == {"encoder": "small", "image_size": 16}
    path = tmp_path / "printed.yaml"
    path.write_text(printed)
    assert job_parser().parse_config(["--config", str(path)], build) == build(
        job_parser().parse_args(argv)
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("stepz: 3\n", ["unknown field 'stepz'"]),
        ("encoder: huge\n", ["encoder must be one of small, big"]),
        ("steps: many\n", ["steps"]),
        ("- 1\n- 2\n", ["must be a mapping"]),
        ("steps: [1\n", ["not YAML"]),
        ("no-mlflow: 3\n", ["true or false"]),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_field(tmp_path, capsys, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as e:
        job_parser().parse_config(["d", "--config", str(path)], build)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(path) in err
    for word in words:
        assert word in err


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        job_parser().parse_args(["d", "--config", str(tmp_path / "nope.yaml")])
    assert e.value.code == 2
    assert "nope.yaml: cannot be read" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_job_flag_shows_its_default_and_the_config_flags(command):
    module = importlib.import_module(COMMANDS[command][0])
    root = module.build_parser(f"flywheel {command}")
    for parser in _parsers(root):
        help_text = parser.format_help()
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            assert "--print-config" in help_text, parser.prog
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue
            if action.required:  # given by the user: no default to show
                continue
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                continue
            if action.dest in ("config", "print_config", "help", "version"):
                continue
            shown = formatter._get_help_string(action) or ""
            assert "default" in shown.lower(), f"{parser.prog} {action.option_strings[0]}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_job_flag_and_argument_says_what_it_is(command):
    """`--help` teaches: no flag, positional argument or subcommand without a help text."""
    module = importlib.import_module(COMMANDS[command][0])
    for parser in _parsers(module.build_parser(f"flywheel {command}")):
        parser.format_help()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert (choice.help or "").strip(), f"{parser.prog} {choice.dest}: no help"
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            assert (action.help or "").strip(), f"{parser.prog} {name}: no help text"
