"""`flywheel eval-policy CHECKPOINT`: success rates in the simulator on paired seeds.

`CHECKPOINT` is a policy checkpoint, a HIL-SERL checkpoint (`flywheel hilserl`'s actor; its
loader is `pipelines.rl.eval_loader`), any other kind registered with
`pipelines.evaluation.register_loader`, or `controller:<name>`; `--compare` adds arms,
each `SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X]`, evaluated on the same seeds and compared
with the first. The design is in `pipelines.evaluation`; this module parses the flags.

Also `python -m pipelines.eval_policy` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipelines.evaluation import EvalConfig, run, summary_lines
from pipelines.rl import eval_loader  # noqa: F401  (registers the `hilserl` checkpoint kind)
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.flags import config_from_flags


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint folder or controller:<name>")
    p.add_argument("--episodes", type=int, default=100, help="episodes per arm")
    p.add_argument("--seed", type=int, default=0, help="seeds --seed .. --seed + episodes - 1")
    p.add_argument(
        "--prompt",
        default="positive",
        help="positive, negative, none (the bare task) or a task text of the policy",
    )
    p.add_argument(
        "--cfg-scale",
        type=float,
        default=1.0,
        help="classifier-free guidance beta (1: the prompt alone)",
    )
    p.add_argument(
        "--n-action-steps",
        type=int,
        default=None,
        help="actions executed per prediction (default: the checkpoint's)",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="ARM",
        help="another arm, SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X] (repeatable)",
    )
    p.add_argument("--report", default=None, help="write the report as JSON here")
    p.add_argument("--videos", type=int, default=2, help="episodes per arm filmed for MLflow")
    p.add_argument("--one-process", action="store_true", help="run without Ray, in this process")
    p.add_argument("--name", default=None, help="the first arm's name (and the MLflow run's)")
    p.add_argument("--ray-address", default=None, help="the Ray cluster (default: local)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return p


def build_config(args: argparse.Namespace) -> EvalConfig:
    return config_from_flags(EvalConfig, args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel eval-policy") -> int:
    cfg = build_parser(prog).parse_config(argv, build_config)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    for line in summary_lines(result):
        print(line)
    if cfg.report:
        print(f"Report: {cfg.report}")
    if result.mlflow_run:
        print(result.mlflow_run)
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.eval_policy"))
