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
`<first DATASET>_propensity_report`), each atomically (`pipelines.selection.report`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.flags import config_from_flags
from pipelines.selection.report import PropensityReportConfig, report_summary, write_report
from pipelines.selection.report_plots import PLOTS

__all__ = ["PLOTS", "build_parser", "main"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", metavar="DATASET", help="collected datasets")
    p.add_argument("--out", default=None, help="report folder (unset: <DATASET>_propensity_report)")
    p.add_argument("--low", type=float, default=0.1, help="low-propensity threshold")
    p.add_argument("--bins", type=int, default=20, help="the propensity histogram's bins")
    p.add_argument("--examples", type=int, default=20, help="approved low-propensity examples")
    p.add_argument("--no-plots", action="store_true", help="write report.json only, no PNGs")
    return p


def build(args: argparse.Namespace) -> PropensityReportConfig:
    return config_from_flags(PropensityReportConfig, args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel propensity-report") -> int:
    cfg = build_parser(prog).parse_config(argv, build)
    done = run_job(write_report, cfg, prog)
    if done is None:
        return 2
    report, out = done
    for line in report_summary(report):
        print(line)
    print(f"Report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m pipelines.propensity_report"))
