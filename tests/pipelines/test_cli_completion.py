"""Shell completion of `flywheel` (argcomplete): commands, and the flags of the one typed."""

from __future__ import annotations

import sys

import argcomplete.finders
import argcomplete.io
import pytest

from pipelines import cli


class Completed(Exception):
    pass


def _exit(code=0):
    raise Completed(code)


def complete(line: str, monkeypatch, tmp_path) -> list[str]:
    """What the shell would be offered for `line` (the cursor at its end)."""
    # argcomplete writes its debug output to fd 9, which is pytest's here: use stderr instead
    monkeypatch.setattr(
        argcomplete.finders.CompletionFinder,
        "_init_debug_stream",
        lambda self: setattr(argcomplete.io, "debug_stream", sys.stderr),
    )
    for key, value in {
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_IFS": "\n",
    }.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "completions"
    with open(out, "w") as stream, pytest.raises(Completed):
        cli.complete(output_stream=stream, exit_method=_exit)
    return [w.strip() for w in out.read_text().split("\n") if w.strip()]


def test_commands_complete(monkeypatch, tmp_path):
    found = complete("flywheel train-", monkeypatch, tmp_path)
    assert sorted(found) == sorted(c for c in cli.COMMANDS if c.startswith("train-"))


def test_the_typed_commands_flags_complete(monkeypatch, tmp_path):
    assert complete("flywheel label --advantage-s", monkeypatch, tmp_path) == ["--advantage-source"]
    flags = complete("flywheel view --", monkeypatch, tmp_path)
    assert {"--out", "--episode", "--data-dir", "--frames", "--print-config"} <= set(flags)
    assert "emulate" in complete("flywheel robot ", monkeypatch, tmp_path)


def test_without_the_shells_request_it_does_nothing(monkeypatch):
    monkeypatch.delenv("_ARGCOMPLETE", raising=False)
    assert cli.complete(exit_method=_exit) is None
