"""Seed 000's analyses of collected data: the propensity report (`flywheel propensity-report`).

From each dataset's propensity log (its own collection run's lines,
`pipelines.selection.propensity`):

* **rejection rate by selector mode**: rejected / critical attempts, over every dataset given
  (collect one dataset per mode to compare them); also by responder (`meta/collect.json`
  names the candidate rows) and by the number of candidates already executed (resampling);
* **low-propensity actions that were approved**: critical attempts with propensity below
  `low` that the admin approved (the seed's "successful exploratory" actions);
* **the propensity histogram** of the critical attempts (plain frames are all 1.0).

Rates count critical attempts only: a plain frame (approval `none`, null in the log) was never
judged, so counting it would dilute every rate. `write_report` writes `report.json` and the
three PNG plots (`pipelines.selection.report_plots`), each atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, atomic_write_bytes, atomic_write_json
from pipelines.runtime.flags import FlagConfig, flag
from pipelines.selection.propensity import COLLECT_META, collection_id_of, log_path, read_log
from pipelines.selection.report_plots import report_plots


@dataclass
class PropensityReportConfig(FlagConfig):
    datasets: list[str] = flag(
        help="collected datasets", positional=True, nargs="+", metavar="DATASET"
    )
    out: str | None = flag(None, "report folder (unset: <DATASET>_propensity_report)")
    low: float = flag(0.1, "low-propensity threshold")
    bins: int = flag(20, "the propensity histogram's bins")  # over [0, 1]
    examples: int = flag(20, "approved low-propensity examples")  # kept in the report
    plots: bool = flag(True, "write report.json only, no PNGs")  # the flag is --no-plots

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
class PropensityReport:
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


def analyse(cfg: PropensityReportConfig) -> PropensityReport:
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
    return PropensityReport(
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


def write_report(cfg: PropensityReportConfig) -> tuple[PropensityReport, Path]:
    """The report's numbers, written to `cfg.out_dir` (report.json and, with `plots`, PNGs)."""
    report = analyse(cfg)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        for name, data in report_plots(report).items():
            atomic_write_bytes(out / name, data)
    atomic_write_json(out / "report.json", report.to_json())
    return report, out


def report_summary(report: PropensityReport) -> list[str]:
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
