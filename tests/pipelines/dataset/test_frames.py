"""FrameReader: random access gives exactly the frames a whole-episode read gives."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.dataset import V30, DatasetError, EpisodeRecorder, LeRobotDataset
from pipelines.dataset.frames import FrameReader
from pipelines.dataset.video import has_encoder

DATA = Path(__file__).resolve().parents[2] / "data"


def recorded(root: Path, codec: str) -> LeRobotDataset:
    """4 episodes, two 32x32 cameras `front` and `wrist`, every frame different, one v3.0
    video file each."""
    rec = EpisodeRecorder(
        root,
        fps=10,
        task="t",
        joint_names=["a", "b"],
        cameras={"front": (32, 32), "wrist": (32, 32)},
        version=V30,
        vcodec=codec,
    )
    for e in range(4):
        rec.begin()
        for i in range(5 + e):
            front = np.full((32, 32, 3), (37 * e + 11 * i) % 256, np.uint8)
            front[: i + 1, :6] = 255
            wrist = np.full((32, 32, 3), (90 + 23 * e + 5 * i) % 256, np.uint8)
            images = {"front": front, "wrist": wrist}
            rec.add(np.array([i, e], np.float32), np.zeros(2, np.float32), images)
        rec.save(success=True)
    rec.close()
    return LeRobotDataset(root)


def assert_random_access_matches(ds: LeRobotDataset, max_open: int = 32) -> int:
    whole = {
        (e, k): list(ds.iter_camera_frames(e, k)) for e in ds.episode_indices for k in ds.video_keys
    }
    wanted = [(e, k, i) for (e, k), frames in whole.items() for i in range(len(frames))]
    order = np.random.default_rng(0).permutation(len(wanted))
    with FrameReader(ds, max_open=max_open) as reader:
        for j in order:
            e, k, i = wanted[j]
            assert np.array_equal(reader.frame(e, k, i), whole[(e, k)][i]), (e, k, i)
    return len(wanted)


@pytest.mark.parametrize("codec", ["av1", "h264", "mpeg4"])
def test_random_frames_are_the_frames_of_whole_episode_reads(tmp_path, codec):
    if not has_encoder(codec):
        pytest.skip(f"this PyAV has no {codec} encoder")
    ds = recorded(tmp_path / "ds", codec)
    # max_open=1: the two cameras' files take turns, each reopened after the other
    assert assert_random_access_matches(ds, max_open=1) == 2 * (5 + 6 + 7 + 8)


def test_a_dataset_lerobot_wrote_reads_the_same_at_random():
    ds = LeRobotDataset(DATA / "lerobot061_v30_h264")
    assert assert_random_access_matches(ds) == ds.info["total_frames"]


def test_what_is_not_there_is_a_one_line_error(tmp_path):
    ds = recorded(tmp_path / "ds", "mpeg4")
    with FrameReader(ds) as reader:
        with pytest.raises(DatasetError, match="episode 0 has 5 frames, no frame 5"):
            reader.frame(0, "front", 5)
        with pytest.raises(DatasetError, match="no video feature 'observation.state'"):
            reader.frame(0, "observation.state", 0)
        assert reader.frame(3, "wrist", 7).shape == (32, 32, 3)
