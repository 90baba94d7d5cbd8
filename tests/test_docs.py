"""The manual: it builds strict, its command reference covers every command, its commands and
flags exist, its pictures are current, and (where Chromium is installed) its pages load in a
browser with their images."""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MODULE_COMMANDS = {module: name for name, (module, _) in COMMANDS.items()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` of the manual, once for this module."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return out


def _parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(COMMANDS[name][0])
    parser = module.build_parser(f"flywheel {name}")
    parser.format_usage()  # a JobParser adds --config/--print-config on first use
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_generated_page_with_every_flag(site, name):
    page = site / "reference" / "commands" / name / "index.html"
    assert page.exists(), f"no reference page for flywheel {name}"
    text = page.read_text()
    parser = _parser(name)
    for sub in [parser, *_subparsers(parser).values()]:
        sub.format_usage()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert option in text, f"flywheel {name}: {option} missing from its page"
    index = (site / "reference" / "commands" / "index.html").read_text()
    assert f"flywheel {name}</code>" in index


def test_the_site_has_the_pictures_and_benchmark_figures(site):
    assert (site / "images" / "flywheel-loop.svg").exists()
    assert (site / "images" / "labeled-episode.png").exists()
    for png in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (site / "results" / png.name).exists(), png.name
    assert (
        "labeled-episode.png" in (site / "tutorials" / "your-recording" / "index.html").read_text()
    )


def test_the_loop_diagram_is_its_scripts_output():
    spec = importlib.util.spec_from_file_location("loop_diagram", DOCS / "diagrams" / "loop.py")
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    committed = (DOCS / "images" / "flywheel-loop.svg").read_text()
    assert committed == loop.svg(), "run `python docs/diagrams/loop.py` and commit the SVG"
    for stage, _ in loop.STAGES:
        assert f">{stage}</text>" in committed


def test_the_readme_is_a_first_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the manual"
    for link in local:
        assert (ROOT / link).exists(), f"README.md links to {link}, which does not exist"
    for name in COMMANDS:  # the table of commands names each one
        assert f"`flywheel {name}" in readme, f"flywheel {name} is not in the README's table"


# -- the commands the manual shows exist, with the flags it gives them


def _shell_commands(text: str):
    """(command words) of each `flywheel ...` or `python -m pipelines.X ...` line in the
    bash/console code blocks of a Markdown text, continuation lines joined."""
    for block in re.findall(r"```(?:bash|console)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            if "<TAB>" in line:  # a shell-completion example, not a command
                continue
            for start in ("flywheel ", "python -m pipelines."):
                at = line.find(start)
                if at == 0 or (at > 0 and start.startswith("python")):
                    yield _words(line[at:])


def _words(line: str) -> list[str]:
    line = re.sub(r"(^|\s)#.*$", "", line)  # a comment
    line = line.split(" & ")[0].split(" && ")[0].split(" | ")[0].split(" > ")[0]
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in an example: split on blanks
        return line.split()


@functools.cache
def _options(name: str, sub: str | None) -> set[str]:
    parser = _parser(name)
    parsers = [parser]
    if sub is not None and sub in _subparsers(parser):
        parsers.append(_subparsers(parser)[sub])
    options = set()
    for p in parsers:
        p.format_usage()
        for action in p._actions:
            options.update(action.option_strings)
            if isinstance(action, argparse.BooleanOptionalAction):
                options.update(o.replace("--", "--no-", 1) for o in action.option_strings)
    return options


def _check(words: list[str], where: str) -> None:
    if words[0] == "flywheel":
        name = words[1] if len(words) > 1 else ""
        if name.startswith("-"):  # flywheel --version / --help
            return
        rest = words[2:]
    else:  # python -m pipelines.<job>
        module = words[2]
        if module not in MODULE_COMMANDS:
            return  # a module that is not a command (pipelines.cli)
        name, rest = MODULE_COMMANDS[module], words[3:]
    assert name in COMMANDS, f"{where}: `flywheel {name}` is not a command"
    sub = rest[0] if rest and not rest[0].startswith("-") else None
    options = _options(name, sub)
    for word in rest:
        flag = word.strip("[]()").split("=")[0]
        for part in flag.split("|"):
            if part.startswith("--") and re.fullmatch(r"--[a-z0-9][a-z0-9-]*", part):
                assert part in options, f"{where}: `flywheel {name}` has no flag {part}"


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_commands_in_the_manual_exist_with_their_flags(page):
    for words in _shell_commands(page.read_text()):
        _check(words, str(page.relative_to(ROOT)))


def test_the_command_checker_catches_a_wrong_flag_and_command():
    text = "```bash\nflywheel label DS --threshhold 30\n```\n"
    (words,) = list(_shell_commands(text))
    with pytest.raises(AssertionError, match="no flag --threshhold"):
        _check(words, "example")
    with pytest.raises(AssertionError, match="not a command"):
        _check(["flywheel", "lable", "DS"], "example")
    _check(["python", "-m", "pipelines.label", "DS", "--threshold", "30"], "example")


# -- the built site in a browser


class _Recorder(http.server.SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path.split("?")[0], int(code)))

    def log_message(self, *args):  # quiet
        pass


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (apt-get install chromium): the pages are not "
    "rendered in a browser here",
)
def test_the_pages_load_in_chromium_with_their_images(site, tmp_path):
    handler = type("Handler", (_Recorder,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pages = {
        "": ["images/flywheel-loop.svg"],
        "tutorials/your-recording/": ["images/labeled-episode.png"],
        "benchmarks/policy/": ["results/policy_quality.png"],
        "benchmarks/hilserl/": ["results/hilserl_curves.png"],
        "reference/commands/view/": [],
    }
    try:
        for page, images in pages.items():
            url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
            done = subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    url,
                ],  # fmt: skip
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert "<h1" in done.stdout, f"{url}: no page rendered ({done.stderr[-500:]})"
            seen = dict(handler.requests)
            for image in images:
                assert seen.get(f"/{image}") == 200, f"{url}: {image} not loaded ({seen})"
        failed = [(path, code) for path, code in handler.requests if code >= 400]
        assert not failed, failed
    finally:
        server.shutdown()
