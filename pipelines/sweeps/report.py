"""A sweep's results: the trials' rows, the text table, the CSV and the metric plot."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass

from pipelines.dataset import replace_durably, temp_path_for
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.space import short_value


@dataclass
class TrialRow:
    trial: str
    params: dict
    status: str  # done, stopped early (ASHA), error: ..., not run
    metrics: dict


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def status_of(error, metrics: dict, metric: str) -> str:
    if error is not None:
        lines = [line for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
        return "error: " + " ".join((lines[-1] if lines else type(error).__name__).split())[:200]
    if metric in metrics:
        return "done"
    if metrics:
        return "stopped early (ASHA)"
    return "not run"


def best_row(rows: list[TrialRow], metric: str) -> TrialRow | None:
    scored = [r for r in rows if _number(r.metrics.get(metric)) is not None]
    return max(scored, key=lambda r: r.metrics[metric]) if scored else None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_columns(kind: SweepKind, rows: list[TrialRow]) -> list[str]:
    params = [p.name for p in kind.params if any(p.name in r.params for r in rows)]
    metrics = [m for m in kind.metrics if any(m in r.metrics for r in rows)]
    return ["trial", *params, *metrics, "status"]


def _values(row: TrialRow, columns: list[str]) -> list:
    out = []
    for c in columns:
        if c == "trial":
            out.append(row.trial)
        elif c == "status":
            out.append(row.status)
        elif c in row.params:
            out.append(row.params[c])
        else:
            out.append(row.metrics.get(c))
    return out


def results_csv(kind: SweepKind, rows: list[TrialRow]) -> str:
    columns = table_columns(kind, rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in _values(row, columns)])
    return buf.getvalue()


def results_table(kind: SweepKind, rows: list[TrialRow]) -> str:
    """The results as an aligned text table (the best trial by the kind's metric marked *)."""
    columns = table_columns(kind, rows)
    best = best_row(rows, kind.metric)
    cells = [[_cell(v) for v in _values(r, columns)] for r in rows]
    marks = ["*" if best is not None and r is best else " " for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for mark, line in zip(marks, cells, strict=True):
        lines.append(f"{mark} " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def metric_figure(rows: list[dict], params: list[str], metric: str, title: str):
    """The metric against the first parameter; one line per value of the other parameters.

    A trial without the metric (stopped early by ASHA, or failed) is a dotted vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    x_name, others = params[0], params[1:]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r["params"].get(o) for o in others), []).append(r)
    for key, members in groups.items():
        points = sorted(
            (m["params"][x_name], m["metrics"][metric])
            for m in members
            if _number(m["metrics"].get(metric)) is not None
        )
        label = ", ".join(f"{o}={short_value(v)}" for o, v in zip(others, key, strict=True)) or None
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=label)
        for x in sorted(m["params"][x_name] for m in members if metric not in m["metrics"]):
            ax.axvline(x, color="grey", ls=":", lw=1)  # no metric: stopped early or failed
    ax.set_xlabel(x_name)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    if any(k for k in groups if any(v is not None for v in k)):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_figure(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    tmp = temp_path_for(path)
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    replace_durably(tmp, path)
