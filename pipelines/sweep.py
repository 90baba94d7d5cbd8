"""`flywheel sweep KIND ...`: Ray Tune sweeps over the knobs that matter, Train V2 inside.

Kinds (the parameters each sweeps; every combination of the given values is one trial):

* `awbc DATASET` over the labeling `--threshold` (and `--n-slices`, `--cfg-scale`): each trial
  labels its own copy of the dataset, trains the policy (ASHA sees its training L1) and
  evaluates it on the same seeds as every other trial. The metric is the success rate.
* `reward-threshold CHECKPOINT DATASET` over the classifier's decision `--threshold`, on
  frames scored once. The metric is F1.
* `hilserl` over `--bc-weight` (and `--online-ratio`): each trial runs `flywheel hilserl` and
  evaluates its policy with eval-policy on the shared seeds. The metric is the success rate.

The sweeps themselves: `pipelines.sweeps` (driver.py: resources, resume, MLflow).

Also `python -m pipelines.sweep` (for `ray job submit`; outputs need absolute paths there).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

from actors.hilserl import HilserlConfig
from actors.hilserl import run as run_hilserl
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.sweeps import (
    KINDS as FAMILY_KINDS,
)
from pipelines.sweeps import (
    HilserlRunner,
    HilserlSweep,
    add_sweep_flags,
    best_row,
    config_from_args,
    results_table,
    run,
)

# The family's kinds, HIL-SERL's given its runner (it lives a floor above the family).
KINDS = {**FAMILY_KINDS, "hilserl": HilserlSweep(HilserlRunner(HilserlConfig, run_hilserl))}


def build_parser(prog: str) -> JobParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_sweep_flags(p, KINDS)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel sweep") -> int:
    build = functools.partial(config_from_args, kinds=KINDS)
    cfg = run_job(lambda a: build_parser(prog).parse_config(a, build), argv, prog)
    result = None if cfg is None else run_job(functools.partial(run, kinds=KINDS), cfg, prog)
    if result is None:
        return 2
    print(results_table(result.kind, result.rows))
    best = best_row(result.rows, result.kind.metric)
    if best is not None:
        print(f"Best: {best.trial} ({result.kind.metric} {best.metrics[result.kind.metric]:.4g})")
    print(f"Results: {result.csv_path}")
    print(f"Plot: {result.png_path}")
    for line in result.warnings:
        print(line, file=sys.stderr)
    if result.mlflow_run:
        print(result.mlflow_run)
    failed = [r.trial for r in result.rows if r.status.startswith("error")]
    if failed:
        print(
            f"{prog}: {len(failed)} trial(s) failed ({', '.join(failed)}); the same command "
            "again retries them and keeps the finished ones",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.sweep"))
