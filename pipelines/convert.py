"""`flywheel convert DATASET OUT --to v2.1|v3.0`: a LeRobot dataset in the other format, in a
new folder OUT (DATASET is only read). `--to v3.0` for LeRobot >= 0.4 (multi-episode files,
video packets copied); `--to v2.1` for openpi, kai0 and GR00T (LeRobot 0.3.3's layout, each
episode's video cut out without re-encoding where it starts on a key frame, else re-encoded
and said on stderr). Every value and frame is kept. For example:
`flywheel convert ~/data/pick_v21 ~/data/pick_v30 --to v3.0`.

Kept: the data columns and values, task texts, extra per-episode metadata (`episode_success`),
per-episode stats (v2.1's episodes_stats.jsonl; v3.0's meta/episodes, aggregated in
meta/stats.json) and the compressed video frames. The design is in `pipelines.dataset.convert`.

OUT must not exist, or be an empty folder, and must be outside DATASET, which is only read.
The result is built beside OUT in `OUT.tmp-XXXXXXXX` and renamed to OUT when complete: a
convert killed part-way leaves that folder (delete it), never a half dataset at OUT. Refused in
one line (exit 2): an --to other than v2.1 or v3.0, a dataset already in that version (copy
the folder instead), a dataset whose folder lacks a file its metadata lists (the first one is
named), an OUT that is not empty or is inside DATASET.

Also `python -m pipelines.convert`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from pipelines.dataset.convert import ConvertResult, convert_dataset
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import check_job_output, exit_process
from pipelines.runtime.flags import FlagConfig, flag

PROGRESS_EVERY_S = 10.0


@dataclass
class ConvertConfig(FlagConfig):
    dataset: str = flag(help="LeRobot v2.1 or v3.0 dataset folder (only read)", positional=True)
    out: str = flag(help="the converted dataset's folder (new, or empty)", positional=True)
    to: str = flag(help="the format to write: v2.1 or v3.0", metavar="v2.1|v3.0")


def run(cfg: ConvertConfig) -> ConvertResult:
    """Convert, with a progress line on stderr at most every PROGRESS_EVERY_S seconds and one
    line per camera whose episodes had to be re-encoded."""
    check_job_output(cfg.out, "OUT")
    last = [time.monotonic()]

    def progress(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            print(f"convert: {what}: {done}/{total} episodes", file=sys.stderr, flush=True)
            last[0] = now

    result = convert_dataset(cfg.dataset, cfg.out, cfg.to, progress)
    for line in reencoded_lines(result):
        print(f"convert: {line}", file=sys.stderr)
    return result


def reencoded_lines(result: ConvertResult) -> list[str]:
    """One line per camera and reason: the episodes re-encoded rather than cut."""
    lines = []
    for key, episodes in result.reencoded.items():
        by_reason: dict[str, list[int]] = {}
        for ep, why in sorted(episodes.items()):
            by_reason.setdefault(why, []).append(ep)
        for why, eps in by_reason.items():
            episodes_text = ", ".join(map(str, eps))
            lines.append(
                f"{key}: episode(s) {episodes_text} re-encoded in the same codec (lossy), "
                f"not cut: {why}"
            )
    return lines


def report(cfg: ConvertConfig, result: ConvertResult) -> list[str]:
    cut = result.video_files if result.version == "v2.1" else 0
    redone = sum(len(v) for v in result.reencoded.values())
    videos = (
        f"{result.video_files} video files ({cut - redone} cut without re-encoding, "
        f"{redone} re-encoded)"
        if result.version == "v2.1"
        else f"{result.video_files} video files (packets copied, no re-encoding)"
    )
    return [
        f"Converted {result.source} (LeRobot {result.source_version}) to {result.version}: "
        f"{result.episodes} episodes, {result.frames} frames, {result.data_files} data files, "
        f"{videos}",
        f"Results: {result.out}",
    ]


JOB = Job("convert", __doc__, ConvertConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.convert"))
