"""`flywheel synth OUT --episodes N`: simulated SO-101 episodes as a LeRobot dataset.

Episodes of scripted controllers of graded quality (`--mix`), some supervised by a simulated
operator, rolled out as Ray tasks and written as a LeRobot v3.0 (or v2.1) dataset, each episode
with its outcome (`episode_success` in meta/episodes: did the simulator see it succeed). The
design, and what each column holds, is in `pipelines.synthesis`; this module parses the flags.

Also `python -m pipelines.synth` (for `ray job submit`).
"""

from __future__ import annotations

import sys

from pipelines.dataset import default_codec_note
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process
from pipelines.synthesis import DEFAULT_MIX, SynthConfig, SynthResult, run, summary_lines

__all__ = ["DEFAULT_MIX", "SynthConfig", "build_parser", "main", "run", "summary_lines"]


def report(cfg: SynthConfig, result: SynthResult) -> list[str]:
    n = len(result.episodes)
    lines = [
        f"Synthesized {n} episodes, {result.frames} frames in {result.seconds:.1f} s "
        f"({n / result.seconds:.2f} episodes/s, {result.frames / result.seconds:.0f} frames/s)",
        *summary_lines(result),
        f"Dataset: {result.root}",
    ]
    return lines + ([f"Success frames: {result.labels}"] if result.labels is not None else [])


def run_with_note(cfg: SynthConfig) -> SynthResult:
    """`run`, saying first which codec the videos get when none was asked for."""
    if cfg.vcodec is None and (note := default_codec_note()):
        print(f"note: {note}", file=sys.stderr)
    return run(cfg)


JOB = Job("synth", __doc__, SynthConfig, run_with_note, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.synth"))
