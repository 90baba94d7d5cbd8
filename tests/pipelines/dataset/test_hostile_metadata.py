"""Issue 22: hostile and careless metadata, images and videos give one-line DatasetErrors."""

import io
import json
import resource
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines import dataset as dsl
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.dataset import atomic as atomic_module

INFO_CASES = {
    "a list": ([1, 2], "not a JSON object"),
    "features a list": ({"features": [1]}, "features is a list"),
    "an int feature": ({"features": {"x": 3}}, r"features\['x'\] is 3"),
    "chunks_size 0": ({"chunks_size": 0}, "chunks_size is 0"),
    "chunks_size abc": ({"chunks_size": "abc"}, "chunks_size is 'abc'"),
    "data_path data/{": ({"data_path": "data/{"}, "data_path 'data/{' is not a path template"),
    "fps 0": ({"fps": 0}, "fps is 0"),
    "fps text": ({"fps": "fast"}, "fps is 'fast'"),
    "total_episodes many": ({"total_episodes": "many"}, "total_episodes is 'many'"),
    "a width bomb": ({"data_path": "data/{episode_index:>999999999}"}, "plain width"),
    "an attribute": ({"data_path": "data/{episode_index.real}"}, "plain width"),
    "climbing data_path": ({"data_path": "../../../../../etc/{episode_index}"}, "leads out"),
    "absolute data_path": ({"data_path": "/etc/{episode_index}"}, "leads out"),
}


def _info(root):
    return json.loads((root / "meta" / "info.json").read_text())


def _set_info(root, info):
    (root / "meta" / "info.json").write_text(json.dumps(info))


def _refused(root, match):
    with pytest.raises(DatasetError, match=match) as e:
        LeRobotDataset(root)
    assert "\n" not in str(e.value) and str(root) in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("case", sorted(INFO_CASES))
def test_bad_info_json_is_a_one_line_error(tiny, case):
    change, match = INFO_CASES[case]
    info = change if not isinstance(change, dict) else {**_info(tiny), **change}
    if "data_path" in change and LeRobotDataset(tiny).version == "v3.0":
        info["data_path"] = change["data_path"].replace("episode_index", "file_index")
        match = match.replace("episode_index", "file_index")
    _set_info(tiny, info)
    assert "info.json" in _refused(tiny, match)


def test_video_features_are_checked(tmp_path):
    from tests.pipelines.dataset.conftest import record

    root = tmp_path / "ds"
    record(root, camera=True, episodes=1)
    info = _info(root)
    info["features"]["front"]["info"] = "av1"
    _set_info(root, info)
    _refused(root, r"features\['front'\].info is 'av1', not an object")
    info["features"]["front"]["info"] = {}
    info["video_path"] = "../../../../../etc/hostname"
    _set_info(root, info)
    _refused(root, "video_path '../../../../../etc/hostname' leads out of the dataset folder")
    info["video_path"] = "videos/{video_key}/x.mp4"
    info["features"]["../../x"] = info["features"].pop("front")
    _set_info(root, info)
    _refused(root, "leads out of the dataset folder")


def test_a_billion_episodes_without_their_metadata_is_refused_fast(tiny21):
    (tiny21 / "meta" / "episodes.jsonl").unlink()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for total in (1_000_000_000, 5000):
        _set_info(tiny21, {**_info(tiny21), "total_episodes": total})
        _refused(tiny21, f"total_episodes {total} .*implausible")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    _set_info(tiny21, {**_info(tiny21), "total_episodes": 2})  # what the files support
    assert LeRobotDataset(tiny21).missing().meta_files == ["meta/episodes.jsonl"]


JSONL_CASES = [  # (file, text, error)
    ("tasks.jsonl", '{"task": "t"}\n', "no task_index"),
    ("episodes.jsonl", '{"length": 3}\n', "no episode_index"),
    ("tasks.jsonl", "[1, 2]\n", "a list, not a JSON object"),
    ("episodes.jsonl", "[1, 2]\n", "a list, not a JSON object"),
    ("tasks.jsonl", b"\xff\xfe\n", "not UTF-8 text"),
    ("episodes.jsonl", b"\xff\xfe\n", "not UTF-8 text"),
    ("episodes.jsonl", '{"episode_index": 0, "tasks": 5, "length": 3}\n', "tasks is 5"),
    ("tasks.jsonl", '{"task_index": "x", "task": "t"}\n', "task_index is 'x'"),
    ("episodes.jsonl", '{"episode_index": 0, "length": -3}\n', "length is -3"),
]


@pytest.mark.parametrize(("name", "text", "match"), JSONL_CASES)
def test_bad_jsonl_rows_are_one_line_errors(tiny21, name, text, match):
    path = tiny21 / "meta" / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert name in _refused(tiny21, match)


@pytest.mark.parametrize("name", ["tasks.jsonl", "episodes.jsonl", "info.json"])
def test_a_folder_in_place_of_a_metadata_file(tiny21, name):
    (tiny21 / "meta" / name).unlink()
    (tiny21 / "meta" / name).mkdir()
    _refused(tiny21, "a folder, not a file")


def test_episodes_stats_rows_are_checked(tiny21):
    (tiny21 / "meta" / "episodes_stats.jsonl").write_text('{"episode_index": 0, "stats": 3}\n')
    with pytest.raises(DatasetError, match="stats is not an object"):
        LeRobotDataset(tiny21).episodes_stats  # noqa: B018


def test_v30_metadata_without_its_index_columns(tmp_path):
    from tests.pipelines.dataset.conftest import record

    root = tmp_path / "ds"
    record(root, "v3.0")
    path = root / "meta" / "tasks.parquet"
    pq.write_table(pa.table({"task": ["t"]}), path)
    _refused(root, "tasks.parquet: no task_index column")
    pq.write_table(pa.table({"task_index": [0], "task": ["t"]}), path)
    ep = next((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    pq.write_table(pq.read_table(ep).drop(["episode_index"]), ep)
    _refused(root, "file-000.parquet: no episode_index column")


def test_v30_rows_pointing_nowhere_are_reported_not_raised(tmp_path):
    from tests.pipelines.dataset.conftest import record

    root = tmp_path / "ds"
    record(root, "v3.0")
    ep = next((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    t = pq.read_table(ep)
    t = t.set_column(
        t.column_names.index("data/chunk_index"), "data/chunk_index", pa.array(["x", "y"])
    )
    pq.write_table(t, ep)
    ds = LeRobotDataset(root)
    assert "metadata does not say where its data is" in ds.missing().lines()[0]
    with pytest.raises(DatasetError, match="data_path"):
        ds.read_episode(0)


def _png_dataset(tmp_path, png: bytes):
    root = tmp_path / "img"
    table = dsl.frames_table({"frame_index": [0], "episode_index": [0], "index": [0]})
    table = table.append_column("cam", pa.array([{"bytes": png, "path": None}]))
    dsl.write_parquet(dsl.episode_data_path(root, 0), table)
    feats = {"cam": {"dtype": "image", "shape": [8, 8, 3], "names": None}}
    info = dsl.new_info(fps=10, features=feats, total_episodes=1, total_frames=1, total_tasks=1)
    dsl.write_meta(root, info=info, tasks={0: "t"}, episodes=[{"episode_index": 0, "length": 1}])
    return root


def test_an_image_over_pillows_bomb_limit_is_a_one_line_error(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # 64x64 is over twice the limit
    root = _png_dataset(tmp_path, buf.getvalue())
    with pytest.raises(DatasetError, match="episode 0 frame 0: cam is not a decodable image"):
        next(LeRobotDataset(root).iter_camera_frames(0, "cam"))


@pytest.mark.parametrize("kind", ["empty", "random", "truncated"])
def test_a_damaged_video_is_not_reported_as_a_codec_problem(tmp_path, kind):
    whole = tmp_path / "whole.mp4"
    with dsl.VideoWriter(whole, 10, 16, 16, codec="mpeg4") as w:
        for i in range(10):
            w.write(np.full((16, 16, 3), i * 20, np.uint8))
    data = {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(4000),
        "truncated": whole.read_bytes()[: whole.stat().st_size // 2],
    }[kind]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(data)
    probe = dsl.probe_video(bad, "av1")
    assert not probe.decodable and probe.damaged, probe
    assert "damaged or not a video" in probe.reason and "\n" not in probe.reason
    assert dsl.probe_video(whole, "mpeg4").damaged is False
    with pytest.raises(dsl.DamagedVideoError, match="damaged or not a video"):
        dsl.count_video_frames(bad)


def test_verify_reads_every_file_whole(tmp_path):
    from tests.pipelines.dataset.conftest import record

    root = tmp_path / "ds"
    record(root, camera=True)
    ds = LeRobotDataset(root)
    assert dsl.verify(ds) == [] and dsl.check_footers(ds) == []
    data = ds.data_file(1)
    raw = bytearray(data.read_bytes())
    raw[8:40] = bytes(32)  # a corrupt column chunk: the footer still reads
    data.write_bytes(bytes(raw))
    assert dsl.check_footers(ds) == []  # the cheap pass cannot see it
    (finding,) = dsl.verify(ds)
    assert finding.startswith("data/chunk-000/episode_000001.parquet: unreadable parquet data")
    shutil.copy(ds.data_file(0), data)  # the footer's row count against the metadata
    rows = pq.read_table(data).slice(0, 2)
    pq.write_table(rows, data)
    assert dsl.check_footers(ds) == [
        "data/chunk-000/episode_000001.parquet: 2 rows, the episode metadata says 3"
    ]
    video = ds.video_file(0, "front")
    video.write_bytes(video.read_bytes()[:100])
    assert any("damaged or not a video" in f for f in dsl.verify(ds))
    video.unlink()
    assert "videos/chunk-000/front/episode_000000.mp4: missing (front)" in dsl.verify(ds)


def test_new_folders_are_fsynced_into_their_parents(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic_module, "fsync_path", lambda p: synced.append(str(p)))
    dsl.temp_path_for(tmp_path / "a" / "b" / "f.parquet")
    assert synced == [str(tmp_path), str(tmp_path / "a")]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        dsl.make_folders(tmp_path / "file")
