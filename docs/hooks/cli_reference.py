"""MkDocs hook: the command reference, generated from the job parsers at build time.

Every subcommand in `pipelines.cli.COMMANDS` gets a page `reference/commands/<name>.md`, made
from its module's `build_parser(prog)` (the same parser `flywheel <name> --help` prints), so the
reference cannot drift from the code: a flag, a default, a choice or a help text changes here
when it changes there. The table of `reference/commands.md` (at its `<!-- commands -->` line)
lists the commands with their one-line help, and the nav gets one entry per command after it.
A module that cannot be imported fails the build (its exception is not caught).

The hook also publishes the benchmark figures of `benchmarks/results/*.png` under `results/`, so
the benchmark pages show the committed figures without a copy in `docs/`.
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the checkout's own code, installed or not
    sys.path.insert(0, str(ROOT))

from pipelines.cli import COMMANDS  # noqa: E402

COMMANDS_INDEX = "reference/commands.md"
PLACEHOLDER = "<!-- commands -->"
_CODE = re.compile(r"`([^`]+)`")


def command_page(name: str) -> str:
    return f"reference/commands/{name}.md"


def on_config(config):
    """The commands index's nav entry becomes a section: the index, then one page per command."""
    entries = [
        {"Commands": [COMMANDS_INDEX] + [{f"flywheel {n}": command_page(n)} for n in COMMANDS]}
    ]

    def walk(items):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                for value in item.values():
                    if value == COMMANDS_INDEX:
                        items[i : i + 1] = entries
                        return True
                    if isinstance(value, list) and walk(value):
                        return True
            elif item == COMMANDS_INDEX:
                items[i : i + 1] = entries
                return True
        return False

    if not walk(config["nav"] or []):
        raise ValueError(f"mkdocs.yml: the nav has no entry {COMMANDS_INDEX}")
    return config


def on_files(files, config):
    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(module_name)  # not importable: the build fails
        parser = module.build_parser(f"flywheel {name}")
        files.append(File.generated(config, command_page(name), content=render(name, parser)))
    for png in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != COMMANDS_INDEX:
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"docs/{COMMANDS_INDEX}: no {PLACEHOLDER} line for the table")
    return markdown.replace(PLACEHOLDER, commands_table())


def commands_table() -> str:
    lines = ["| command | module | what it does |", "|---|---|---|"]
    for name, (module, text) in COMMANDS.items():
        lines.append(f"| [`flywheel {name}`](commands/{name}.md) | `{module}` | {_cell(text)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _html(text: str) -> str:
    """Help text as HTML: escaped, with `code` spans kept."""
    parts = _CODE.split(text)
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion: %(default)s, %(choices)s, %(prog)s
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % {**params, "prog": parser.prog}
    return text


def _default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.required:
        return "required"
    if action.default is argparse.SUPPRESS:
        return "unset" if isinstance(action, argparse._AppendAction) else ""
    if not action.option_strings and action.nargs is None:
        return "required"
    if action.default is None:
        return "unset"
    if isinstance(action.default, (list, tuple)):
        return ",".join(map(str, action.default)) or "[]"
    return str(action.default)


def _table(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> list[str]:
    formatter = parser._get_formatter()
    rows = ["<table>", "<tr><th>flag</th><th>default</th><th>what it does</th></tr>"]
    for action in actions:
        invocation = formatter._format_action_invocation(action)
        default = _default(action)
        rows.append(
            f"<tr><td><code>{html.escape(invocation)}</code></td>"
            f"<td><code>{html.escape(default)}</code></td>"
            f"<td>{_html(_help(parser, action))}</td></tr>"
        )
    rows.append("</table>")
    return rows


def render(name: str, parser: argparse.ArgumentParser, depth: int = 1) -> str:
    """One parser (and its subcommands) as Markdown."""
    parser.format_help()  # a JobParser adds --config/--print-config on first use
    title = "#" * depth
    lines = [f"{title} `{parser.prog}`", ""]
    if depth == 1:
        lines += [f"*{COMMANDS[name][1]}* (module `{COMMANDS[name][0]}`)", ""]
    if parser.description:
        lines += [f"<p>{_html(_paragraph(parser.description))}</p>", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    subcommands = []
    for group in parser._action_groups:
        shown = [
            a
            for a in group._group_actions
            if a.help is not argparse.SUPPRESS
            and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        subcommands += [
            a for a in group._group_actions if isinstance(a, argparse._SubParsersAction)
        ]
        if shown:
            lines += [f"{title}# {group.title}", "", *_table(parser, shown), ""]
    if parser.epilog:
        lines += ["```text", parser.epilog.strip("\n"), "```", ""]
    for action in subcommands:
        for sub_name, sub in action.choices.items():
            lines.append(render(f"{name} {sub_name}", sub, depth + 1))
    return "\n".join(lines) + "\n"


def _paragraph(text: str) -> str:
    """A docstring paragraph on one line."""
    return " ".join(line.strip() for line in text.strip().splitlines())
