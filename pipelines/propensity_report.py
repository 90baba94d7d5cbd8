"""`flywheel propensity-report DATASET [DATASET ...]`: seed 000's analyses of collected data.

From each dataset's propensity log (its own collection run's lines,
`pipelines.selection.propensity`):

* **rejection rate by selector mode**: rejected / critical attempts, over every dataset given
  (collect one dataset per mode to compare them); also by responder (`meta/collect.json`
  names the candidate rows) and by the number of candidates already executed (resampling);
* **low-propensity actions that were approved**: critical attempts with propensity below
  `--low` (0.1) that the admin approved (the seed's "successful exploratory" actions);
* **the propensity histogram** of the critical attempts (plain frames are all 1.0).

Rates count critical attempts only: a plain frame (approval `none`, null in the log) was never
judged, so counting it would dilute every rate (the seed's `== "approved"` filter trap seen
from the other side). Writes `report.json` and three PNG plots to `--out` (default
`<first DATASET>_propensity_report`), each atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, atomic_write_bytes, atomic_write_json
from pipelines.runtime.cli import JobParser
from pipelines.selection.propensity import COLLECT_META, collection_id_of, log_path, read_log

PLOTS = ("rejection_by_mode.png", "rejection_by_responder.png", "propensity_histogram.png")


@dataclass
class ReportConfig:
    datasets: list[str]
    out: str | None = None
    low: float = 0.1
    bins: int = 20
    examples: int = 20
    plots: bool = True

    @property
    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        first = Path(self.datasets[0])
        return first.parent / f"{first.name}_propensity_report"


def load_critical(root: Path) -> tuple[list[dict], list[str]]:
    """The critical attempts of a dataset's log, and its responders' names."""
    if not (root / "meta" / "info.json").exists():
        raise DatasetError(f"{root}/meta/info.json: missing (not a LeRobot dataset)")
    if not log_path(root).exists():
        raise DatasetError(
            f"{log_path(root)}: missing (a dataset collected with flywheel collect has one)"
        )
    entries = read_log(log_path(root), collection_id_of(root))
    responders: list[str] = []
    meta = root / COLLECT_META
    if meta.exists():
        responders = list(json.loads(meta.read_text()).get("responders", []))
    return [dict(e, dataset=str(root)) for e in entries if e["is_critical"]], responders


def rate_table(groups: dict[str, list[bool]]) -> dict[str, dict]:
    return {
        k: {"attempts": len(v), "rejected": int(sum(v)), "rejection_rate": float(np.mean(v))}
        for k, v in sorted(groups.items())
        if v
    }


@dataclass
class Report:
    by_mode: dict
    by_responder: dict
    by_already_executed: dict
    low_propensity_approved: dict
    histogram: dict
    datasets: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "datasets": self.datasets,
            "rejection_by_selector_mode": self.by_mode,
            "rejection_by_responder": self.by_responder,
            "rejection_by_already_executed": self.by_already_executed,
            "low_propensity_approved": self.low_propensity_approved,
            "propensity_histogram": self.histogram,
        }


def analyse(cfg: ReportConfig) -> Report:
    """The report's numbers (pure: no files written)."""
    if not 0 < cfg.low <= 1:
        raise DatasetError(f"--low {cfg.low}: a propensity in (0, 1]")
    if cfg.bins < 1:
        raise DatasetError(f"--bins {cfg.bins}: at least 1")
    by_mode: dict[str, list[bool]] = {}
    by_responder: dict[str, list[bool]] = {}
    by_executed: dict[str, list[bool]] = {}
    critical: list[dict] = []
    for name in cfg.datasets:
        entries, responders = load_critical(Path(name))
        for e in entries:
            rejected = e["approval_status"] == "rejected"
            by_mode.setdefault(e["selector_mode"], []).append(rejected)
            row = int(e.get("selected_candidate", -1))
            who = responders[row] if 0 <= row < len(responders) else f"candidate {row}"
            by_responder.setdefault(who, []).append(rejected)
            by_executed.setdefault(str(e["num_already_executed"]), []).append(rejected)
        critical += entries
    props = np.array([e["action_propensity"] for e in critical], dtype=np.float64)
    low = [e for e in critical if e["action_propensity"] < cfg.low]
    low_ok = [e for e in low if e["approval_status"] == "approved"]
    counts, edges = np.histogram(props, bins=cfg.bins, range=(0.0, 1.0))
    keys = ("dataset", "episode_index", "frame_index", "state_id", "action_propensity")
    return Report(
        by_mode=rate_table(by_mode),
        by_responder=rate_table(by_responder),
        by_already_executed=rate_table(by_executed),
        low_propensity_approved={
            "threshold": cfg.low,
            "low_propensity_attempts": len(low),
            "approved": len(low_ok),
            "examples": [{k: e[k] for k in keys} for e in low_ok[: cfg.examples]],
        },
        histogram={
            "critical_attempts": len(critical),
            "edges": edges.tolist(),
            "counts": counts.tolist(),
            "mean": float(props.mean()) if len(props) else None,
        },
        datasets=[str(Path(d)) for d in cfg.datasets],
    )


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def plots(report: Report) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for name, table, title in (
        (PLOTS[0], report.by_mode, "rejection rate by selector mode"),
        (PLOTS[1], report.by_responder, "rejection rate by responder (selected candidate)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        keys = list(table)
        ax.bar(keys, [table[k]["rejection_rate"] for k in keys], color="tab:red")
        for i, k in enumerate(keys):
            ax.text(i, table[k]["rejection_rate"], f"n={table[k]['attempts']}", ha="center",
                    va="bottom", fontsize=8)  # fmt: skip
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("rejected / critical attempts")
        ax.set_title(title, fontsize=10)
        out[name] = _png(fig)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    h = report.histogram
    edges = np.array(h["edges"])
    ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", edgecolor="black")
    ax.axvline(report.low_propensity_approved["threshold"], color="tab:orange", ls="--",
               label="--low")  # fmt: skip
    ax.set_xlabel("action_propensity P(a | s) of critical attempts")
    ax.set_ylabel("attempts")
    ax.legend(fontsize=8)
    ax.set_title("propensity histogram", fontsize=10)
    out[PLOTS[2]] = _png(fig)
    plt.close(fig)
    return out


def run(cfg: ReportConfig) -> tuple[Report, Path]:
    report = analyse(cfg)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        for name, data in plots(report).items():
            atomic_write_bytes(out / name, data)
    atomic_write_json(out / "report.json", report.to_json())
    return report, out


def summary_lines(report: Report) -> list[str]:
    lines = ["rejection rate by selector mode:"]
    lines += [
        f"  {k}: {v['rejection_rate']:.1%} of {v['attempts']} critical attempts"
        for k, v in report.by_mode.items()
    ]
    lines.append("rejection rate by responder:")
    lines += [
        f"  {k}: {v['rejection_rate']:.1%} of {v['attempts']}"
        for k, v in report.by_responder.items()
    ]
    low = report.low_propensity_approved
    lines.append(
        f"low-propensity (< {low['threshold']}) attempts: {low['low_propensity_attempts']}, "
        f"approved: {low['approved']}"
    )
    return lines


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", metavar="DATASET")
    p.add_argument("--out", default=None, help="report folder (<DATASET>_propensity_report)")
    p.add_argument("--low", type=float, default=0.1, help="low-propensity threshold (0.1)")
    p.add_argument("--bins", type=int, default=20)
    p.add_argument("--examples", type=int, default=20, help="approved low-propensity examples")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel propensity-report") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = ReportConfig(**vars(args))
    try:
        report, out = run(cfg)
    except DatasetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    print(f"Report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m pipelines.propensity_report"))
