"""`flywheel synth OUT --episodes N`: simulated SO-101 episodes as a LeRobot dataset.

Episodes of scripted controllers of graded quality (`--mix`), some supervised by a simulated
operator, rolled out as Ray tasks and written as a LeRobot v2.1 or v3.0 dataset. The design, and
what each column holds, is in `pipelines.synthesis`; this module parses the flags.

Also `python -m pipelines.synth` (for `ray job submit`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.dataset import V21, V30, default_codec_note
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.flags import config_from_flags
from pipelines.simulator.tasks import DEFAULT_TASK
from pipelines.synthesis import DEFAULT_MIX, SynthConfig, run, summary_lines

__all__ = ["DEFAULT_MIX", "SynthConfig", "build_parser", "main", "run", "summary_lines"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="new dataset folder (must not exist, or be empty)")
    p.add_argument("--episodes", type=int, required=True, help="episodes to roll out")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same dataset")
    p.add_argument(
        "--task",
        default=DEFAULT_TASK,
        help="the simulated task, reach_grasp or pick_lift; any other text is the task text of "
        "a reach_grasp dataset",
    )
    p.add_argument(
        "--task-text", default=None, help="the dataset's task text (default: the task's own)"
    )
    p.add_argument("--mix", default=DEFAULT_MIX, help="controller shares")
    p.add_argument(
        "--operator",
        type=float,
        default=0.5,
        help="share of noisy/failing episodes supervised by the operator",
    )
    p.add_argument("--fps", type=int, default=10, help="control steps (and frames) per second")
    p.add_argument("--image-size", type=int, default=128, help="camera images, square, in px")
    p.add_argument(
        "--steps-after-success",
        type=int,
        default=0,
        metavar="N",
        help="keep recording N frames after the success and write <OUT>_success_frames.csv "
        "(the reward classifier's labels)",
    )
    p.add_argument(
        "--vcodec",
        default=None,
        help="video codec: av1 (the default where PyAV has SVT-AV1, as LeRobot's), h264 or mpeg4",
    )
    p.add_argument(
        "--format",
        default=V21,
        help=f"LeRobot layout: {V21} (one file per episode) or {V30} (as LeRobot >= 0.4 "
        "records: episodes packed into files chunked by size)",
    )
    p.add_argument("--ray-address", default=None, help="the Ray cluster (default: local)")
    return p


def build_config(args: argparse.Namespace) -> SynthConfig:
    return config_from_flags(SynthConfig, args)


def main(argv: Sequence[str] | None = None, prog: str = "flywheel synth") -> int:
    cfg = build_parser(prog).parse_config(argv, build_config)
    if cfg.vcodec is None and (note := default_codec_note()):
        print(f"{prog}: note: {note}", file=sys.stderr)
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    n = len(result.episodes)
    print(
        f"Synthesized {n} episodes, {result.frames} frames in {result.seconds:.1f} s "
        f"({n / result.seconds:.2f} episodes/s, {result.frames / result.seconds:.0f} frames/s)"
    )
    for line in summary_lines(result):
        print(line)
    print(f"Dataset: {result.root}")
    if result.labels is not None:
        print(f"Success frames: {result.labels}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.synth"))
