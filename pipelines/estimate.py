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

import argparse
from collections.abc import Sequence

from pipelines.estimator.config import EstimateConfig
from pipelines.estimator.inference import run
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a LeRobot dataset (the output is written into it)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder of train-estimator")
    p.add_argument("--batch-size", type=int, default=64, help="frames per encoder batch")
    p.add_argument("--replicas", type=int, default=None, help="model replicas (actors)")
    p.add_argument(
        "--gpus-per-replica", type=float, default=None, help="unset: 1 when the cluster has GPUs"
    )
    p.add_argument("--data-dir", default="data", help="episode files to read")
    p.add_argument("--ray-address", default=None, help="the Ray cluster; unset: a local one")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel estimate") -> int:
    cfg = build_parser(prog).parse_config(argv, EstimateConfig.from_flags)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    rate = result.frames / result.seconds if result.seconds else 0.0
    print(
        f"Estimated {result.episodes} episodes ({result.frames} frames) in "
        f"{result.seconds:.1f} s, {rate:.0f} frames/s; {result.skipped} already done"
    )
    print(f"Output: {result.out_dir}")
    return 0


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.estimate"))
