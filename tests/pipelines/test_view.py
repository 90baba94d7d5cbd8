"""`flywheel view`: one episode's frames, value curve and advantage labels as a PNG."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines import label, synth, view
from pipelines.dataset import LeRobotDataset
from pipelines.vision.episode_view import (
    _runs,
    frame_label,
    load_episode_view,
    render_episode_view,
)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, ray_cluster) -> Path:
    """Two simulated episodes (an expert's, a failing one's), 32 px, labeled top 30 %."""
    root = tmp_path_factory.mktemp("view") / "ds"
    synth.run(
        synth.SynthConfig(
            out=str(root), episodes=2, seed=7, image_size=32, mix="expert=1,failing=1"
        ),
        out=lambda *a: None,
    )
    label.run(label.LabelConfig(str(root), threshold=30, mlflow=False), out=lambda *a: None)
    return root


def test_frame_labels_and_runs():
    assert frame_label("pick the cube, Advantage: positive") == "positive"
    assert frame_label("pick the cube, Advantage: negative") == "negative"
    assert frame_label("pick the cube, Advantage: 3") == "3"
    assert frame_label("pick the cube") is None
    assert _runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert _runs(np.zeros(3, bool)) == []


def test_the_view_shows_every_camera_the_labels_and_progress(labeled):
    ds = LeRobotDataset(labeled)
    episode = ds.episode_indices[-1]
    table = ds.read_episode(episode, ["task_index", "progress"])
    v = load_episode_view(ds, episode, frames=5)
    n = table.num_rows
    assert v.length == n and v.curve_name == "progress"
    assert np.allclose(v.curve, table.column("progress").to_numpy().reshape(-1))
    assert list(v.frame_indices) == sorted(set(np.linspace(0, n - 1, 5).round().astype(int)))
    assert set(v.images) == set(ds.camera_keys)
    for frames in v.images.values():
        assert len(frames) == len(v.frame_indices) and frames[0].shape == (32, 32, 3)
    # each frame's label is the one its task_index names in the task table
    expected = [
        {"positive": 1.0, "negative": 0.0}[frame_label(ds.tasks[i])]
        for i in table.column("task_index").to_numpy().reshape(-1)
    ]
    assert list(v.labels) == expected and 0 < sum(expected) < n
    png = render_episode_view(v)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width > 400


def test_an_estimate_folder_gives_the_value_curve(labeled, tmp_path):
    root = Path(shutil.copytree(labeled, tmp_path / "ds"))
    ds = LeRobotDataset(root)
    for path in ds.data_files():  # an estimate's folder: the data files plus absolute_value
        t = pq.read_table(path)
        value = -0.01 * t.column("frame_index").to_numpy().astype(np.float32)
        target = root / "data_RECAP_7" / path.relative_to(root / "data")
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t.append_column("absolute_value", pa.array(value)), target)
    out = tmp_path / "ep.png"
    argv = [str(root), "--episode", "0", "--data-dir", "data_RECAP_7", "--out", str(out)]
    assert view.main([*argv, "--frames", "3"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"
    v = load_episode_view(LeRobotDataset(root), 0, "data_RECAP_7", frames=3)
    assert v.curve_name == "absolute_value"
    assert np.allclose(v.curve, -0.01 * np.arange(v.length), atol=1e-6)


def test_unlabeled_data_has_no_labels(labeled):
    ds = LeRobotDataset(labeled)
    ds.tasks = {i: "reach and grasp" for i in ds.tasks}  # as before any labeling
    v = load_episode_view(ds, 1, frames=2)
    assert v.labels is None and v.curve_name == "progress"
    result = view.ViewResult(Path("ep.png"), v.length, list(v.images), v.curve_name, None, None)
    cfg = view.ViewConfig(str(labeled), out="ep.png", episode=1)
    assert "no advantage labels" in view.report(cfg, result)[0]
    with Image.open(io.BytesIO(render_episode_view(v))) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--episode", "9"], "no episode 9 (episodes: 0-1)"),
        (["--data-dir", "data_NONE_1"], "missing (episode 0, data_NONE_1/)"),
        (["--frames", "0"], "--frames 0: at least 1"),
        (["--out", "{tmp}/ep.jpg"], "must be a .png file"),
        (["--out", "{tmp}/no/such/ep.png"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(labeled, tmp_path, capsys, args, words):
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "ep.png")]
    assert view.main([str(labeled), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flywheel view: error: ") and words in err[0]
    assert list(tmp_path.iterdir()) == []
