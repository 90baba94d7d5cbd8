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

from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.selection.report import PropensityReportConfig, report_summary, write_report
from pipelines.selection.report_plots import PLOTS

__all__ = ["PLOTS", "build_parser", "main"]


def report(cfg: PropensityReportConfig, done: tuple) -> list[str]:
    analysis, out = done
    return [*report_summary(analysis), f"Report: {out}"]


JOB = Job("propensity-report", __doc__, PropensityReportConfig, write_report, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.propensity_report"))
