"""`flywheel inspect DATASET`: what a LeRobot dataset holds and what its folder lacks.

Besides the metadata, it decodes the first frame of every camera (in the first episode whose
file is present), the way every later stage reads it, and says which cameras' videos this
machine cannot decode, naming the codec: a dataset recorded in a codec the local PyAV lacks
shows up here rather than half-way through a training run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.dataset import DatasetError, LeRobotDataset, probe_video
from pipelines.runtime.cli import JobParser


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__)
    p.add_argument("dataset", help="LeRobot v2.1 or v3.0 dataset folder")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel inspect") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        ds = LeRobotDataset(args.dataset)
    except DatasetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(ds.summary())
    for name, feat in ds.features.items():
        print(f"  {name}: {feat.get('dtype')} {feat.get('shape')}")
    for i, text in sorted(ds.tasks.items()):
        print(f"  task {i}: {text}")
    print("cameras (first frame decoded here):" if ds.camera_keys else "no cameras")
    for key in ds.camera_keys:
        print(f"  {key}: {camera_check(ds, key)}")
    missing = ds.missing()
    if missing:
        print("missing from the folder:")
        for line in missing.lines():
            print(f"  {line}")
    else:
        print("every file the metadata lists is present")
    return 0


def camera_check(ds: LeRobotDataset, key: str) -> str:
    """One line: the camera's codec and whether its first frame decodes on this machine."""
    feature = ds.features[key]
    if feature.get("dtype") == "image":
        for episode in ds.episode_indices:
            if ds.data_file(episode).exists():
                try:
                    frame = next(iter(ds.iter_camera_frames(episode, key)))
                except (DatasetError, StopIteration) as e:
                    return f"images in the parquet files, cannot be decoded here: {e}"
                return f"images in the parquet files, {_size(frame)}, episode {episode} decodes"
        return "images in the parquet files; no data file present"
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
        if not probe.decodable:
            return f"{probe.codec} video, CANNOT be decoded here ({where}): {probe.reason}"
        try:
            frame = next(iter(ds.iter_camera_frames(episode, key)))
        except DatasetError as e:
            return f"{probe.codec} video, episode {episode} cannot be read: {e}"
        return f"{probe.codec} video, {_size(frame)}, episode {episode} decodes ({where})"
    return f"{codec or 'unknown codec'} video, no video file present"


def _size(frame) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.inspect"))
