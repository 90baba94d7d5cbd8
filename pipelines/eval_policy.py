"""`flywheel eval-policy CHECKPOINT`: success rates in the simulator on paired seeds.

`CHECKPOINT` is a policy checkpoint, a HIL-SERL checkpoint (`flywheel hilserl`'s actor; its
loader is `pipelines.rl.eval_loader`), any other kind registered with
`pipelines.evaluation.register_loader`, or `controller:<name>`; `--compare` adds arms,
each `SOURCE[#prompt=P][#cfg=B][#steps=N][#name=X]`, evaluated on the same seeds and compared
with the first. The design is in `pipelines.evaluation`; this module parses the flags.

Also `python -m pipelines.eval_policy` (for `ray job submit`).
"""

from __future__ import annotations

from pipelines.evaluation import EvalConfig, EvalResult, run, summary_lines
from pipelines.rl import eval_loader  # noqa: F401  (registers the `hilserl` checkpoint kind)
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process


def report(cfg: EvalConfig, result: EvalResult) -> list[str]:
    lines = list(summary_lines(result))
    lines += [f"Report: {cfg.report}"] if cfg.report else []
    return lines + ([result.mlflow_run] if result.mlflow_run else [])


JOB = Job("eval-policy", __doc__, EvalConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.eval_policy"))
