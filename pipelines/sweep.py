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

import argparse
import functools
import sys
from collections.abc import Sequence

from actors.hilserl import HilserlConfig
from actors.hilserl import run as run_hilserl
from pipelines.runtime.cli import JobParser, run_job
from pipelines.sweeps import (
    KINDS as FAMILY_KINDS,
)
from pipelines.sweeps import (
    HilserlRunner,
    HilserlSweep,
    TrialSettings,
    best_row,
    config_from_args,
    results_table,
    run,
)

# The family's kinds, HIL-SERL's given its runner (it lives a floor above the family).
KINDS = {**FAMILY_KINDS, "hilserl": HilserlSweep(HilserlRunner(HilserlConfig, run_hilserl))}


def build_parser(prog: str) -> argparse.ArgumentParser:
    # The flags default to None: a flag given overrides the --config file, and SweepConfig
    # supplies the rest; their help says the SweepConfig default.
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("kind", help=f"what to sweep: {', '.join(KINDS)}")
    p.add_argument(
        "inputs",
        nargs="*",
        default=[],
        help="awbc: DATASET; reward-threshold: CHECKPOINT DATASET; hilserl: none",
    )
    p.add_argument(  # the sweep's own --config (JobParser then adds only --print-config)
        "--config",
        dest="sweep_file",
        default=None,
        metavar="FILE.yaml",
        help="a YAML file: parameters and options; flags on the command line override it",
    )
    g = p.add_argument_group("search space (comma-separated values; every combination a trial)")
    for name, kinds in _params().items():
        flag = "--" + name.replace("_", "-")
        g.add_argument(
            flag,
            default=argparse.SUPPRESS,  # absent: the --config file's values, if any
            metavar="V1,V2,...",
            help=f"the values to try ({', '.join(kinds)})",
        )
    g = p.add_argument_group("every trial (awbc: train-policy and eval-policy settings)")
    d = TrialSettings()
    for flag, typ, help_text in (
        ("--steps", int, f"training steps per trial (default {d.steps})"),
        ("--checkpoint-every", int, "steps between reports (default: steps / 5)"),
        ("--workers", int, f"DDP workers per trial (default {d.workers})"),
        ("--cpus-per-worker", int, f"CPUs of each worker (default {d.cpus_per_worker})"),
        ("--gpus-per-worker", float, f"GPUs of each worker (default {d.gpus_per_worker:g})"),
        ("--batch-size", int, f"batch size (default {d.batch_size})"),
        ("--image-size", int, f"image size (default {d.image_size})"),
        ("--eval-episodes", int, f"evaluation episodes per trial (default {d.eval_episodes})"),
        (
            "--eval-seed",
            int,
            f"first evaluation seed, every trial's (default {d.eval_seed})",
        ),
    ):
        g.add_argument(flag, type=typ, default=None, help=help_text)
    g = p.add_argument_group("Tune")
    g.add_argument("--name", default=None, help="the sweep's name (default sweep-<kind>)")
    g.add_argument("--storage", default=None, help="where sweeps go (default flywheel-runs)")
    g.add_argument("--max-concurrent-trials", type=int, default=None, help="default: the cluster")
    g.add_argument("--grace-period", type=int, default=None, help="ASHA's (default 1)")
    g.add_argument("--reduction-factor", type=int, default=None, help="ASHA's (default 3)")
    g.add_argument("--ray-address", default=None, help="a Ray cluster (default: start one)")
    g.add_argument("--no-mlflow", action="store_true", help="log nothing to MLflow")
    return p


def _params() -> dict[str, list[str]]:
    """Every sweepable parameter's name -> the kinds that sweep it."""
    found: dict[str, list[str]] = {}
    for kind in KINDS.values():
        for param in kind.params:
            found.setdefault(param.name, []).append(kind.name)
    return found


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
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.sweep"))
