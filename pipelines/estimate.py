"""`flywheel estimate DATASET --checkpoint CKPT`: Stage 2, the estimator over a dataset (Ray Data).
A recap checkpoint (trained on any recording with episode outcomes) writes V and the N-step
advantage (`--n-step`) into data_RECAP_<step>/; a kai0/pi06 checkpoint (trained on annotated
progress) writes data_KAI0_<step>/ or data_PI06_<step>/.

The trained estimator over every frame (`pipelines.estimator.inference`: frames decoded as
Ray Data tasks, encoded by an actor pool of model replicas), written beside the dataset's
files in `<dataset>/data_<VARIANT>_<step>/` with `absolute_value`, `absolute_advantage` and
(kai0) `relative_advantage`. A `recap` checkpoint (trained from episode outcomes, for any
recording with outcomes) writes V(s_t) and the N-step advantage (`--n-step`, 50), with the
episode's return-to-go past its end: episodes need their outcome (or `--default-outcome
failure`). A kai0/pi06 checkpoint (trained on annotated progress) takes neither option.

The folder's manifest.json names the checkpoint (hashes), the source files, and for recap
N and the outcomes: a rerun with the same manifest skips the files already written (an
interrupted pass resumes), one with another computes everything again. Then
`flywheel label DATASET --data-dir data_RECAP_<step> --advantage-source absolute_advantage`.

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
