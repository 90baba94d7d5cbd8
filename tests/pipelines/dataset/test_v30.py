"""LeRobot v3.0 written by Flywheel: synth's files chunked by size, every stage over them, and
the recorder appending episodes to shared files."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import inspect, label, synth
from pipelines.dataset import (
    V30,
    DatasetError,
    EpisodeRecorder,
    LeRobotDataset,
    episode_rows,
    read_video,
)
from pipelines.dataset.v30 import FilePos, assign_files
from pipelines.estimator import inference as estimate
from pipelines.estimator import training as train_estimator
from pipelines.estimator.config import EstimatorTrainConfig
from tests.helpers import label_from_estimate, small_run


def test_files_are_packed_by_size_as_lerobot_does():
    mb = 1024 * 1024
    assert assign_files([40 * mb] * 5, 100) == [FilePos(0, 0)] * 2 + [FilePos(0, 1)] * 2 + [
        FilePos(0, 2)
    ]
    # one episode larger than the limit still gets a file of its own
    assert assign_files([300 * mb, 1, 1], 100) == [FilePos(0, 0), FilePos(0, 1), FilePos(0, 1)]
    # chunk folders roll over after chunks_size files
    assert assign_files([60 * mb] * 3, 100, chunks_size=2) == [
        FilePos(0, 0),
        FilePos(0, 1),
        FilePos(1, 0),
    ]
    # appending: the current file's size counts
    assert assign_files([30 * mb], 100, current=FilePos(3, 7), current_size=60 * mb) == [
        FilePos(3, 7)
    ]
    assert assign_files([50 * mb], 100, current=FilePos(3, 7), current_size=60 * mb) == [
        FilePos(3, 8)
    ]


@pytest.fixture(scope="module")
def synth_v30(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("v30") / "ds"
    made = synth.run(
        synth.SynthConfig(
            out=str(root), episodes=5, seed=4, image_size=32, mix="expert=1,hesitant=1", format=V30
        ),
        out=lambda *a: None,
    )
    return root, made


def test_synth_writes_v30_that_reads_back(synth_v30, capsys):
    root, made = synth_v30
    ds = LeRobotDataset(root)
    assert ds.version == V30 and ds.info["total_episodes"] == 5 and not ds.missing()
    assert [p.relative_to(root).as_posix() for p in ds.data_files()] == [
        "data/chunk-000/file-000.parquet"  # 5 small episodes: one file, one video per camera
    ]
    for key in ds.video_keys:
        assert (root / f"videos/{key}/chunk-000/file-000.mp4").exists()
        total = sum(ds.episode_length(e) for e in ds.episode_indices)
        assert len(read_video(root / f"videos/{key}/chunk-000/file-000.mp4")) == total
    rows = episode_rows(ds)
    assert [r["dataset_from_index"] for r in rows] == list(
        np.cumsum([0] + [m["length"] for m in made.episodes[:-1]])
    )
    for e in ds.episode_indices:
        t = ds.read_episode(e)
        assert t["frame_index"].to_pylist() == list(range(ds.episode_length(e)))
        for key in ds.video_keys:
            assert len(list(ds.iter_camera_frames(e, key))) == t.num_rows
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert stats["observation.images.front"]["count"] == [ds.info["total_frames"]]
    assert set(stats["action"]) >= {"q01", "q10", "q50", "q90", "q99"}
    tasks = pd.read_parquet(root / "meta" / "tasks.parquet")
    assert tasks.index.name == "task" and tasks["task_index"].tolist() == [0]
    assert inspect.main([str(root)]) == 0
    assert "decodes" in capsys.readouterr().out


def test_every_stage_runs_on_v30(synth_v30, tmp_path):
    src, _ = synth_v30
    root = Path(shutil.copytree(src, tmp_path / "ds"))
    label.run(label.LabelConfig(dataset=str(root), threshold=30, mlflow=False), out=lambda *a: None)
    trained = train_estimator.run(
        EstimatorTrainConfig.from_flags(dataset=str(root), holdout=0.0, **small_run(tmp_path))
    )
    est = estimate.run(estimate.EstimateConfig(str(root), trained.checkpoint, batch_size=4))
    assert [p.name for p in est.out_dir.rglob("*.parquet")] == ["file-000.parquet"]
    res = label_from_estimate(root, est.out_dir.name)
    assert res.frames == LeRobotDataset(root).info["total_frames"]


def _frames(n: int, shade: int) -> list[np.ndarray]:
    return [np.full((32, 32, 3), (shade + 3 * i) % 256, np.uint8) for i in range(n)]


def test_recorder_appends_episodes_to_shared_v30_files(tmp_path):
    root = tmp_path / "rec"
    cams = {"observation.images.front": (32, 32)}

    def record(lengths, shades, **kw):
        rec = EpisodeRecorder(
            root, fps=10, task="t", joint_names=["a", "b"], cameras=cams, vcodec="mpeg4", **kw
        )
        for n, shade in zip(lengths, shades, strict=True):
            rec.begin()
            for i, img in enumerate(_frames(n, shade)):
                rec.add(
                    np.full(2, i, np.float32), np.full(2, i, np.float32), {k: img for k in cams}
                )
            rec.save(success=True)
        return rec

    record([7, 5], [10, 90], version=V30)
    record([6], [170])  # reopened: appends to the same files, a v3.0 dataset stays v3.0
    ds = LeRobotDataset(root)
    assert ds.version == V30 and ds.info["total_episodes"] == 3 and ds.info["total_frames"] == 18
    assert len(list((root / "data").rglob("*.parquet"))) == 1
    assert len(list((root / "videos").rglob("*.mp4"))) == 1
    for e, (n, shade) in enumerate([(7, 10), (5, 90), (6, 170)]):
        assert ds.read_episode(e)["frame_index"].to_pylist() == list(range(n))
        got = np.stack(list(ds.iter_camera_frames(e, "observation.images.front")))
        want = np.stack(_frames(n, shade))
        assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 3
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]  # no temporaries left
    with pytest.raises(DatasetError, match="v3.0 dataset; cannot append v2.1"):
        EpisodeRecorder(
            root, fps=10, task="t", joint_names=["a", "b"], cameras=cams, version="v2.1"
        )
    assert pq.read_metadata(root / "data/chunk-000/file-000.parquet").num_rows == 18
