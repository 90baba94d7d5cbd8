"""The house's rules, checked on the code's own imports (README, Layout).

Floors, from the ground up; a module imports only its own floor and the floors below it:

    0 ground floor   pipelines.{dataset,runtime,vision,simulator}
    1 families       pipelines.{labeling,estimator,classifier,policy,evaluation,rl,selection,
                     synthesis,recap}
    2 serving        serving (the endpoint's library; its job module is on floor 5)
    3 actors         actors (online workers beside their drivers)
    4 compositions   pipelines.{sweeps,demo_steps}: drivers that run other families' drivers
    5 jobs           pipelines.<job> (every `flywheel <job>`), pipelines.cli, serving.reward

and a job never imports another job. No import cycles, no module over 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipelines.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "actors", "serving")
JOBS = {module for module, _ in COMMANDS.values()} | {"pipelines.cli"}
FLOORS = [
    (0, ("pipelines.dataset", "pipelines.runtime", "pipelines.vision", "pipelines.simulator")),
    (
        1,
        tuple(
            f"pipelines.{f}"
            for f in (
                "labeling",
                "estimator",
                "classifier",
                "policy",
                "evaluation",
                "rl",
                "selection",
                "synthesis",
                "recap",
            )
        ),
    ),
    (2, ("serving",)),
    (3, ("actors",)),
    (4, ("pipelines.sweeps", "pipelines.demo_steps")),
]
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = modules()


def floor(module: str) -> int:
    if module in JOBS:
        return 5
    for number, prefixes in FLOORS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return number
    if module in ("pipelines", "actors"):
        return 0  # the packages' own docstrings
    raise AssertionError(f"{module}: on no floor (add it to tests/test_layout.py's FLOORS)")


def imports(module: str) -> set[str]:
    """The project modules `module` imports, anywhere in it (functions included)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_floor_and_below(module):
    mine = floor(module)
    above = sorted(m for m in GRAPH[module] if floor(m) > mine)
    assert not above, f"{module} (floor {mine}) imports {above}"
    if module in JOBS:
        jobs = sorted(m for m in GRAPH[module] if m in JOBS)
        assert not jobs, f"the job {module} imports the jobs {jobs}"


def test_there_is_no_import_cycle():
    """Tarjan's strongly connected components over the module graph; a package's
    `__init__` re-exporting its own modules is not a cycle of design, so edges from a
    module to its own package are left out."""
    graph = {
        m: {t for t in ts if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
        for m, ts in GRAPH.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_is_over_600_lines():
    sources = list(MODULES.values()) + sorted((ROOT / "tests").rglob("*.py"))
    sources += sorted((ROOT / "benchmarks").rglob("*.py"))
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"
