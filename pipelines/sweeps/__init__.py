"""Ray Tune sweeps over the knobs that matter (`flywheel sweep`), Train V2 inside.

Kinds (`kinds.KINDS`; the parameters each sweeps, every combination of the given values a
trial): `awbc` (awbc_sweep.py), `reward-threshold` (threshold_sweep.py), `hilserl`
(hilserl_sweep.py, given HIL-SERL's runner). `run(config)` (driver.py) runs one sweep;
config.py holds `SweepConfig` and the sweep YAML, space.py the search-space language,
resources.py the concurrency, report.py the table, CSV and plot.
"""

from pipelines.sweeps.config import SweepConfig, TrialSettings, TuneSettings, read_config_file
from pipelines.sweeps.driver import SweepResult, run
from pipelines.sweeps.flags import add_sweep_flags, config_from_args
from pipelines.sweeps.hilserl_sweep import HilserlRunner, HilserlSweep
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.kinds import KINDS, check_config, check_spec, kind_named, trial_needs
from pipelines.sweeps.report import best_row, metric_figure, results_csv, results_table, status_of
from pipelines.sweeps.resources import concurrency
from pipelines.sweeps.space import Param, grid, parse_values, trial_name

__all__ = [
    "KINDS",
    "HilserlRunner",
    "HilserlSweep",
    "Param",
    "SweepConfig",
    "SweepKind",
    "SweepResult",
    "TrialSettings",
    "TuneSettings",
    "add_sweep_flags",
    "best_row",
    "check_config",
    "check_spec",
    "concurrency",
    "config_from_args",
    "grid",
    "kind_named",
    "metric_figure",
    "parse_values",
    "read_config_file",
    "results_csv",
    "results_table",
    "run",
    "status_of",
    "trial_name",
    "trial_needs",
]
