"""The dataset layer: the two real datasets, v2.1 round trips, atomic writes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import dataset as dsl
from pipelines.dataset import DatasetError, LeRobotDataset

SHARED = Path(__file__).resolve().parents[4] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")


@pytest.fixture()
def g1(tmp_path):
    return Path(shutil.copytree(SHARED / "g1_v21_subset", tmp_path / "g1"))


@pytest.fixture()
def so101(tmp_path):
    return Path(shutil.copytree(SHARED / "so101_v30_record_test", tmp_path / "so101"))


@needs_shared
def test_reads_real_v21_dataset_and_reports_what_is_missing(g1):
    ds = LeRobotDataset(g1)
    assert ds.version == dsl.V21
    assert ds.fps == 30 and len(ds.episode_indices) == 100
    assert ds.tasks == {0: "Pick up the yellow bottle on the table."}
    assert ds.video_keys == ["observation.images.cam_high"]
    ep0 = ds.read_episode(0)
    assert ep0.num_rows == ds.episodes[0]["length"] == 479
    state = ep0.column("observation.state").combine_chunks()
    assert state.type.list_size == 26
    only = ds.read_episode(0, columns=["timestamp", "frame_index"])
    assert only.column_names == ["timestamp", "frame_index"]

    missing = ds.missing()
    assert missing.data_episodes == list(range(1, 100))
    assert missing.videos["observation.images.cam_high"] == list(range(100))
    lines = missing.lines()
    assert lines[0].startswith("data for 99 episode(s) missing (episodes 1-99; e.g. data/chunk-000")
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: missing \(episode 1\)"):
        ds.read_episode(1)


@needs_shared
def test_reads_real_v30_dataset(so101):
    ds = LeRobotDataset(so101)
    assert ds.version == dsl.V30
    assert ds.tasks == {0: "Pick the orange cube and place it in the box"}
    assert sorted(ds.episodes) == [0, 1, 2, 3]
    lengths = [ds.episodes[e]["length"] for e in range(4)]
    assert sum(lengths) == ds.info["total_frames"] == 1492
    for e in range(4):
        t = ds.read_episode(e, columns=["episode_index", "frame_index", "observation.state"])
        assert t.num_rows == lengths[e]
        assert set(t.column("episode_index").to_pylist()) == {e}
        assert t.column("frame_index").to_pylist() == list(range(lengths[e]))
    start, end = ds.video_span(2, "observation.images.front")
    assert 0 < start < end
    rep = ds.missing()
    assert not rep.data_episodes
    assert set(rep.videos) == {"observation.images.front", "observation.images.top"}
    assert rep.video_examples["observation.images.front"] == (
        "videos/observation.images.front/chunk-000/file-000.mp4"
    )


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        LeRobotDataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"meta/info.json: missing"):
        LeRobotDataset(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        LeRobotDataset(tmp_path)
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v1.6"}))
    with pytest.raises(DatasetError, match="v1.6"):
        LeRobotDataset(tmp_path)


def _episode(n, ep, start=0):
    rng = np.random.default_rng(ep)
    return dsl.frames_table(
        {
            "observation.state": rng.normal(size=(n, 6)).astype(np.float32),
            "action": rng.normal(size=(n, 6)).astype(np.float32),
            "timestamp": np.arange(n) / 10,
            "frame_index": np.arange(n),
            "episode_index": np.full(n, ep),
            "index": np.arange(start, start + n),
            "task_index": np.zeros(n),
            "progress": np.linspace(0, 1, n),
            "stage_progress_gt": np.linspace(0, 1, n),
            "progress_gt": np.linspace(0, 1, n),
            "absolute_advantage": rng.normal(size=n),
            "relative_advantage": rng.normal(size=n),
            "absolute_value": rng.normal(size=n),
            "action_propensity": np.full(n, 0.25),
            "selector_mode": ["epsilon_greedy"] * n,
            "approval_status": ["none"] * (n - 1) + ["approved"],
            "data_type": ["demo"] * n,
            "next.reward": np.r_[np.zeros(n - 1), 1.0],
            "next.done": np.r_[np.zeros(n - 1, bool), True],
            "complementary_info.is_intervention": np.zeros(n, bool),
        }
    )


def test_v21_round_trip_with_first_class_columns(tmp_path):
    root = tmp_path / "ds"
    tables = [_episode(5, 0), _episode(3, 1, start=5)]
    for ep, t in enumerate(tables):
        dsl.write_parquet(dsl.episode_data_path(root, ep), t)
    feats = dsl.features_of(
        tables[0], {"observation.images.front": dsl.video_feature(64, 64, 10, "mp4v")}
    )
    info = dsl.new_info(fps=10, features=feats, total_episodes=2, total_frames=8, total_tasks=1)
    dsl.write_meta(
        root,
        info=info,
        tasks={0: "reach"},
        episodes=[
            {"episode_index": e, "tasks": ["reach"], "length": t.num_rows}
            for e, t in enumerate(tables)
        ],
        episodes_stats={e: dsl.table_stats(t) for e, t in enumerate(tables)},
    )
    ds = LeRobotDataset(root)
    assert ds.version == dsl.V21 and ds.fps == 10
    assert ds.features["progress"] == {"dtype": "float32", "shape": [1], "names": None}
    assert ds.features["next.done"]["dtype"] == "bool"
    assert ds.features["selector_mode"]["dtype"] == "string"
    assert ds.features["observation.state"]["shape"] == [6]
    back = ds.read_episode(1)
    assert back.schema.field("task_index").type == pa.int64()
    assert back.schema.field("progress").type == pa.float32()
    assert back.schema.field("complementary_info.is_intervention").type == pa.bool_()
    assert back.column("approval_status").to_pylist()[-1] == "approved"
    assert back.equals(tables[1])
    stats = ds.episodes_stats[0]
    assert stats["progress"]["max"] == [1.0] and stats["progress"]["count"] == [5]
    assert len(stats["observation.state"]["mean"]) == 6
    assert "selector_mode" not in stats
    assert ds.data_files() == [dsl.episode_data_path(root, 0), dsl.episode_data_path(root, 1)]
    rep = ds.missing()
    assert not rep.data_episodes and rep.videos["observation.images.front"] == [0, 1]
    lines = (root / "meta" / "tasks.jsonl").read_text().splitlines()
    assert lines == ['{"task_index": 0, "task": "reach"}']


def test_closed_vocabularies_are_checked():
    with pytest.raises(DatasetError, match="'data_type': value 'teleop'"):
        dsl.frames_table({"data_type": ["demo", "teleop"]})
    with pytest.raises(DatasetError, match="approval_status"):
        dsl.frames_table({"approval_status": ["maybe"]})


def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path, monkeypatch):
    path = tmp_path / "data" / "chunk-000" / "episode_000000.parquet"
    old = _episode(4, 0)
    dsl.write_parquet(path, old)

    def dying_writer(table, where, **kw):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", dying_writer)
    with pytest.raises(OSError, match="disk full"):
        dsl.write_parquet(path, _episode(9, 0))
    monkeypatch.undo()
    assert pq.read_table(path).equals(old)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_stale_temp_files_are_found_and_removed(tmp_path):
    target = tmp_path / "meta" / "info.json"
    target.parent.mkdir()
    stale = dsl.temp_path_for(target)
    stale.write_text("{")
    video_tmp = dsl.temp_path_for(tmp_path / "videos" / "episode_000000.mp4")
    video_tmp.write_bytes(b"")
    keep = tmp_path / "meta" / ".hidden_but_mine"
    keep.write_text("x")
    assert dsl.remove_stale_temps(tmp_path) == 2
    assert not stale.exists() and not video_tmp.exists() and keep.exists()


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "episode_000000.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match=r"episode_000000.parquet: unreadable parquet file"):
        dsl.read_columns(bad)
    good = tmp_path / "good.parquet"
    dsl.write_parquet(good, _episode(3, 0))
    with pytest.raises(DatasetError, match="missing column 'progres'"):
        dsl.read_columns(good, ["progres"])


def test_column_to_numpy_accepts_shape_one_lists():
    t = pa.table({"p": pa.FixedSizeListArray.from_arrays(pa.array([0.5, 0.25], pa.float32()), 1)})
    assert dsl.column_to_numpy(t, "p").tolist() == [0.5, 0.25]
    t = pa.table({"p": pa.array([0.5, None], pa.float64())})
    assert np.isnan(dsl.column_to_numpy(t, "p")[1])
