"""`flywheel inspect DATASET`: what a LeRobot dataset holds and what its folder lacks.

Besides the metadata, it decodes the first frame of every camera (in the first episode whose
file is present), the way every later stage reads it, and says which cameras' videos this
machine cannot decode, naming the codec: a dataset recorded in a codec the local PyAV lacks
shows up here rather than half-way through a training run; a video file that is damaged (or
not a video at all) is told apart from one in a codec this machine lacks.

`--verify` also reads every data file whole and decodes every video frame
(`pipelines.dataset.verify`): silent corruption that opens fine, one line per finding, and
exit status 1 when there is any. Missing files, or a camera whose first frame does not decode
here, also exit 1; a dataset that cannot be loaded is one line and exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.dataset import DatasetError, LeRobotDataset, probe_video, verify
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.cluster import exit_process
from pipelines.runtime.flags import FlagConfig, add_flags, flag


@dataclass
class InspectConfig(FlagConfig):
    dataset: str = flag(help="LeRobot v2.1 or v3.0 dataset folder", positional=True)
    verify: bool = flag(
        False,
        "also read every data file whole and decode every video frame (silent corruption); "
        "exit 1 when anything is found",
    )


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__)
    add_flags(p, InspectConfig)
    return p


def report(cfg: InspectConfig) -> int:
    """Print what the dataset holds; 1 when files are missing, a camera's first frame does not
    decode here, or `--verify` finds a problem, else 0."""
    ds = LeRobotDataset(cfg.dataset)
    print(ds.summary())
    for name, feat in ds.features.items():
        print(f"  {name}: {feat.get('dtype')} {feat.get('shape')}")
    for i, text in sorted(ds.tasks.items()):
        print(f"  task {i}: {text}")
    print("cameras (first frame decoded here):" if ds.camera_keys else "no cameras")
    checks = [camera_check(ds, key) for key in ds.camera_keys]
    for key, (_, line) in zip(ds.camera_keys, checks, strict=True):
        print(f"  {key}: {line}")
    missing = ds.missing()
    if missing:
        print("missing from the folder:")
        for line in missing.lines():
            print(f"  {line}")
    else:
        print("every file the metadata lists is present")
    problems = bool(missing) or not all(ok for ok, _ in checks)
    return max(verify_check(ds) if cfg.verify else 0, int(problems))


def main(argv: Sequence[str] | None = None, prog: str = "flywheel inspect") -> int:
    cfg = build_parser(prog).parse_config(argv, InspectConfig.from_flags)
    status = run_job(report, cfg, prog)
    return 2 if status is None else status


def verify_check(ds: LeRobotDataset) -> int:
    """`--verify`: every file read whole; each finding on a line, 1 when there are any."""
    findings = verify(ds)
    if not findings:
        print("verified: every data file reads whole, every video frame decodes")
        return 0
    print(f"verify found {len(findings)} problem{'s' if len(findings) > 1 else ''}:")
    for line in findings:
        print(f"  {line}")
    return 1


def camera_check(ds: LeRobotDataset, key: str) -> tuple[bool, str]:
    """Whether the camera's first frame decodes on this machine, and one line saying so."""
    feature = ds.features[key]
    if feature.get("dtype") == "image":
        for episode in ds.episode_indices:
            if ds.data_file(episode).exists():
                try:
                    frame = next(iter(ds.iter_camera_frames(episode, key)))
                except (DatasetError, StopIteration) as e:
                    return False, f"images in the parquet files, cannot be decoded here: {e}"
                return (
                    True,
                    f"images in the parquet files, {_size(frame)}, episode {episode} decodes",
                )
        return False, "images in the parquet files; no data file present"
    codec = (feature.get("info") or {}).get("video.codec")
    for episode in ds.episode_indices:
        try:
            path = ds.video_file(episode, key)
        except (KeyError, DatasetError):
            continue
        if not path.exists():
            continue
        probe = probe_video(path, codec)
        where = ds.relative(path)
        if probe.damaged:
            return (
                False,
                f"{probe.codec} video, file damaged or not a video ({where}): {probe.reason}",
            )
        if not probe.decodable:
            return False, f"{probe.codec} video, CANNOT be decoded here ({where}): {probe.reason}"
        try:
            frame = next(iter(ds.iter_camera_frames(episode, key)))
        except DatasetError as e:
            return False, f"{probe.codec} video, episode {episode} cannot be read: {e}"
        return True, f"{probe.codec} video, {_size(frame)}, episode {episode} decodes ({where})"
    return False, f"{codec or 'unknown codec'} video, no video file present"


def _size(frame) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.inspect"))
