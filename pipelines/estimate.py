"""`flywheel estimate DATASET --checkpoint CKPT`: Stage 2, the estimator over a dataset (Ray Data).

The trained estimator over every frame (`pipelines.estimator.inference`: frames decoded as
Ray Data tasks, encoded by an actor pool of model replicas), written beside the dataset's
files in `<dataset>/data_<VARIANT>_<step>/` with `absolute_value`, `absolute_advantage` and
(kai0) `relative_advantage`; files already written are skipped, so an interrupted pass
resumes. Then `flywheel label DATASET --data-dir data_KAI0_<step> --advantage-source
absolute_advantage`.

Also `python -m pipelines.estimate` (for `ray job submit`).
"""

from __future__ import annotations

from pipelines.estimator.config import EstimateConfig
from pipelines.estimator.inference import EstimateResult, run
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process


def report(cfg: EstimateConfig, result: EstimateResult) -> list[str]:
    rate = result.frames / result.seconds if result.seconds else 0.0
    return [
        f"Estimated {result.episodes} episodes ({result.frames} frames) in "
        f"{result.seconds:.1f} s, {rate:.0f} frames/s; {result.skipped} already done",
        f"Output: {result.out_dir}",
    ]


JOB = Job("estimate", __doc__, EstimateConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.estimate"))
