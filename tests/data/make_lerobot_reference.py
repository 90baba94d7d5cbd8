"""Write tests/data/lerobot_frames.json: what LeRobot 0.6.1 itself reads from the two datasets.

Run by hand, never in CI (LeRobot 0.6 needs Python >= 3.12 and torch < 2.12, which the project
cannot share), in a separate venv outside the repository:

    /root/.pyenv/versions/3.12.1/bin/python -m venv /work/lerobot-venv
    . /work/lerobot-venv/bin/activate
    pip install torch==2.11.0 torchvision==0.26.0 && pip install "lerobot[dataset]==0.6.1"
    HF_HUB_OFFLINE=1 python tests/data/make_lerobot_reference.py

Decoding goes through LeRobot's PyAV path (`video_backend="pyav"`; torchcodec does not load
without a system FFmpeg). LeRobot returns float32 frames in [0, 1]; each frame is turned back
into the uint8 H x W x 3 array it came from, round(x * 255), after checking that x * 255 is an
integer (so nothing is lost), and hashed (SHA-256 of its bytes).

- lerobot061_v30_h264 (v3.0): `LeRobotDataset` reads every frame: the decoded camera and the
  tabular values, per episode, hashed as contiguous arrays (float32 or int64, n x d).
- lerobot033_v21_av1 (v2.1, which LeRobot 0.6 refuses to open): the camera frames come from
  LeRobot's `decode_video_frames` called on each episode's mp4 with the parquet timestamps, as
  LeRobot's v2.1 reader did; the tabular values from `LeRobotDataset` on a copy converted to
  v3.0 by LeRobot's own `convert_dataset_v21_to_v30` (whose concatenated video must decode
  to the same frames, checked here).

The file name does not start with `test_`, so pytest never collects it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
V30 = "lerobot061_v30_h264"
V21 = "lerobot033_v21_av1"
CAMERA = "observation.images.front"
TABULAR = {
    "observation.state": np.float32,
    "action": np.float32,
    "progress": np.float32,
    "stage_progress_gt": np.float32,
    "timestamp": np.float32,
    "frame_index": np.int64,
    "episode_index": np.int64,
    "index": np.int64,
    "task_index": np.int64,
}


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def to_uint8(frames) -> np.ndarray:
    """LeRobot's float frames (..., C, H, W in [0, 1]) as uint8 (..., H, W, C), losslessly."""
    x = frames.numpy().astype(np.float64) * 255
    exact = np.round(x)
    worst = float(np.abs(x - exact).max())
    if worst > 1e-3:
        raise SystemExit(f"LeRobot's frames are not k/255 (off by {worst})")
    return np.moveaxis(exact.astype(np.uint8), -3, -1)


def read_with_lerobot(root: Path, repo_id: str, with_frames: bool) -> dict:
    """Every item of a v3.0 dataset through LeRobotDataset, per episode."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id, root=root, video_backend="pyav")
    episodes: dict[int, dict] = {}
    for i in range(len(ds)):
        item = ds[i]
        ep = episodes.setdefault(int(item["episode_index"]), {"items": []})
        ep["items"].append(item)
    out = {}
    for e, ep in sorted(episodes.items()):
        items = ep["items"]
        record = {"length": len(items), "tasks": sorted({it["task"] for it in items})}
        record["tabular"] = {
            key: sha256(
                np.stack([np.asarray(it[key].numpy(), dtype) for it in items]).reshape(
                    len(items), -1
                )
            )
            for key, dtype in TABULAR.items()
        }
        if with_frames:
            record["frames"] = [sha256(to_uint8(it[CAMERA])) for it in items]
        out[str(e)] = record
    return out


def v21_frames(root: Path) -> dict:
    """Each v2.1 episode's frames through LeRobot's decoder, at the parquet timestamps."""
    import pyarrow.parquet as pq
    from lerobot.datasets.video_utils import decode_video_frames

    info = json.loads((root / "meta" / "info.json").read_text())
    out = {}
    for line in (root / "meta" / "episodes.jsonl").read_text().splitlines():
        e = int(json.loads(line)["episode_index"])
        chunk = e // info["chunks_size"]
        data = root / info["data_path"].format(episode_chunk=chunk, episode_index=e)
        video = root / info["video_path"].format(
            episode_chunk=chunk, episode_index=e, video_key=CAMERA
        )
        timestamps = pq.read_table(data, columns=["timestamp"]).column(0).to_pylist()
        frames = decode_video_frames(video, timestamps, tolerance_s=1e-4, backend="pyav")
        uint8 = to_uint8(frames)
        assert len(uint8) == len(timestamps)
        out[str(e)] = [sha256(f) for f in uint8]
    return out


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import av
    import lerobot

    reference = {
        "made_by": f"lerobot {lerobot.__version__}, av {av.__version__} (video_backend pyav)",
        "frames": "sha256 of each decoded frame, uint8 H x W x 3 (round(x * 255) of LeRobot's)",
        "tabular": "sha256 of each column per episode, n x d, float32 or int64",
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        v30 = Path(shutil.copytree(HERE / V30, Path(tmp) / V30))
        reference["datasets"][V30] = {"episodes": read_with_lerobot(v30, f"local/{V30}", True)}

        v21 = Path(shutil.copytree(HERE / V21, Path(tmp) / V21))
        frames = v21_frames(v21)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lerobot.scripts.convert_dataset_v21_to_v30",
                f"--repo-id=local/{V21}",
                f"--root={v21}",
                "--push-to-hub=false",
            ],
            check=True,
        )
        episodes = read_with_lerobot(v21, f"local/{V21}", True)
        for e, record in episodes.items():  # the converted file's frames: the same
            if record["frames"] != frames[e]:
                raise SystemExit(f"{V21} episode {e}: converted and direct decodes differ")
        reference["datasets"][V21] = {"episodes": episodes}
    path = HERE / "lerobot_frames.json"
    path.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
