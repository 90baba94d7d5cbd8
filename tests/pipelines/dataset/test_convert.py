"""`flywheel convert`: LeRobot v2.1 <-> v3.0 on datasets LeRobot itself wrote, every value and
decoded frame kept, the v2.1 result in LeRobot 0.3.3's layout, re-encoding said, bad inputs
refused in one line, nothing half-written at OUT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import convert
from pipelines.dataset import (
    LeRobotDataset,
    aggregate_stats,
    commit_staged,
    stage_episode_outcomes,
    unflatten_stats,
)
from pipelines.dataset.convert import hf_schema_metadata
from pipelines.dataset.v30 import episode_rows
from pipelines.dataset.video_cut import EpisodeSpan, Packet, remux_obstacle, span_members

REPO = Path(__file__).resolve().parents[3]
V21_AV1, V30_H264, V30_REC = "lerobot033_v21_av1", "lerobot061_v30_h264", "lerobot061_v30_recording"
CAMERA = "observation.images.front"
OUTCOMES = {0: True, 2: False}  # episode 1 has none


def lerobot_copy(name: str, tmp_path: Path, outcomes: bool = True) -> Path:
    """A copy of a dataset LeRobot wrote (tests/data, else the shared folder), with outcomes
    (`episode_success`) on some episodes: an extra per-episode field to carry over."""
    src = REPO / "tests" / "data" / name
    if not src.is_dir():
        src = REPO.parent / "shared" / "datasets" / name
    if not src.is_dir():
        pytest.skip(f"{name} not present")
    root = Path(shutil.copytree(src, tmp_path / name))
    if outcomes:
        commit_staged(root, stage_episode_outcomes(LeRobotDataset(root), OUTCOMES))
    return root


def run_convert(source: Path, out: Path, to: str) -> LeRobotDataset:
    assert convert.main([str(source), str(out), "--to", to]) == 0
    return LeRobotDataset(out)


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def assert_same_episodes(a: LeRobotDataset, b: LeRobotDataset) -> None:
    """Every episode's rows, task texts, outcome and decoded camera frames are the same."""
    assert a.episode_indices == b.episode_indices
    assert a.tasks == b.tasks
    assert a.video_keys == b.video_keys
    for ep in a.episode_indices:
        ta, tb = a.read_episode(ep), b.read_episode(ep)
        assert ta.equals(tb), f"episode {ep}: rows differ"
        assert a.episodes[ep]["tasks"] == b.episodes[ep]["tasks"]
        assert a.episode_outcome(ep) == b.episode_outcome(ep)
        for key in a.video_keys:
            fa, fb = list(a.iter_camera_frames(ep, key)), list(b.iter_camera_frames(ep, key))
            assert len(fa) == len(fb) == ta.num_rows
            assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True)), (ep, key)


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_v21_to_v30_and_back_keeps_every_value_and_frame(tmp_path):
    src = lerobot_copy(V21_AV1, tmp_path)
    v30 = run_convert(src, tmp_path / "v30", "v3.0")
    source = LeRobotDataset(src)
    assert v30.version == "v3.0"
    assert_same_episodes(source, v30)
    # LeRobot's v3.0 layout: one data file, one video file, the spans of the episodes in it
    assert files(v30.root) == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        f"videos/{CAMERA}/chunk-000/file-000.mp4",
    ]
    rows = episode_rows(v30)
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [
        (0, 30),
        (30, 75),
        (75, 135),
    ]
    assert [r[f"videos/{CAMERA}/from_timestamp"] for r in rows] == [0.0, 3.0, 7.5]
    assert [r["episode_success"] for r in rows] == [True, None, False]
    # the compressed frames are the episodes' own, joined without re-encoding
    joined = packets(v30.video_file(0, CAMERA))
    assert joined == sum((packets(source.video_file(ep, CAMERA)) for ep in (0, 1, 2)), [])
    # per-episode stats carried, meta/stats.json their aggregate
    for r in rows:
        assert unflatten_stats(r) == source.episodes_stats[r["episode_index"]]
    stats = json.loads((v30.meta_dir / "stats.json").read_text())
    assert stats == aggregate_stats(source.episodes_stats.values())
    info = json.loads((v30.meta_dir / "info.json").read_text())
    assert info["features"] == source.info["features"]
    assert "total_chunks" not in info and info["data_files_size_in_mb"] == 100

    back = run_convert(v30.root, tmp_path / "v21", "v2.1")
    assert_same_episodes(source, back)
    for rel in ("meta/info.json",):
        assert json.loads((back.root / rel).read_text()) == json.loads((src / rel).read_text())
    for rel in ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"):
        assert jsonl(back.root / rel) == jsonl(src / rel), rel
    for ep in source.episode_indices:
        a, b = pq.read_table(source.data_file(ep)), pq.read_table(back.data_file(ep))
        assert a.equals(b, check_metadata=True)  # `datasets`' Sequence schema as LeRobot 0.3.3
        assert packets(source.video_file(ep, CAMERA)) == packets(back.video_file(ep, CAMERA))


@pytest.mark.parametrize("name", [V30_H264, V30_REC])
def test_v30_to_v21_and_back_keeps_every_value_and_frame(tmp_path, name, capsys):
    src = lerobot_copy(name, tmp_path)
    source = LeRobotDataset(src)
    v21 = run_convert(src, tmp_path / "v21", "v2.1")
    assert "re-encoded" not in capsys.readouterr().err  # every LeRobot episode is cut
    assert v21.version == "v2.1"
    assert_same_episodes(source, v21)
    rows = episode_rows(source)
    for r in rows:  # per-episode stats, quantiles included, in episodes_stats.jsonl
        assert v21.episodes_stats[r["episode_index"]] == unflatten_stats(r)
    for key in source.video_keys:  # each episode's own packets, cut out of the shared file
        shared = packets(source.video_file(0, key))
        cut = sum((packets(v21.video_file(ep, key)) for ep in v21.episode_indices), [])
        assert cut == shared

    back = run_convert(v21.root, tmp_path / "v30", "v3.0")
    assert_same_episodes(source, back)
    assert json.loads((back.meta_dir / "info.json").read_text()) == source.info
    for rel in ("data/chunk-000/file-000.parquet",):
        assert pq.read_table(back.root / rel).equals(pq.read_table(src / rel))
    got = episode_rows(back)
    assert [set(r) for r in got] == [set(r) for r in rows]  # the same columns
    for a, b in zip(rows, got, strict=True):
        for k, v in a.items():
            if k.endswith("_timestamp"):  # LeRobot sums floats: 49.900000000000006 vs 49.9
                assert b[k] == pytest.approx(v, abs=1e-9), k
            else:
                assert b[k] == v, k
    want = json.loads((src / "meta" / "stats.json").read_text())  # LeRobot's own aggregate
    have = json.loads((back.meta_dir / "stats.json").read_text())
    assert set(have) == set(want)
    for feature, stats in want.items():
        assert set(have[feature]) == set(stats)
        for k, v in stats.items():
            assert np.allclose(have[feature][k], v, rtol=1e-6, atol=1e-9), (feature, k)


def test_the_v21_result_has_lerobot_033s_layout(tmp_path):
    """The same recording written by LeRobot 0.3.3 (v2.1, AV1) and by LeRobot 0.6.1 (v3.0,
    H.264): converted to v2.1, the latter has the former's files, keys and data."""
    ref = LeRobotDataset(lerobot_copy(V21_AV1, tmp_path, outcomes=False))
    out = run_convert(lerobot_copy(V30_H264, tmp_path, outcomes=False), tmp_path / "o", "v2.1")

    assert files(out.root) == files(ref.root)
    a, b = (json.loads((d.meta_dir / "info.json").read_text()) for d in (ref, out))
    assert list(b) == list(a)  # the same keys, in LeRobot 0.3.3's order
    assert {k: v for k, v in b.items() if k != "features"} == {
        k: v for k, v in a.items() if k != "features"
    }
    assert list(b["features"]) == list(a["features"])
    for name, feature in a["features"].items():
        assert {k: v for k, v in b["features"][name].items() if k != "info"} == {
            k: v for k, v in feature.items() if k != "info"
        }
    for rel in ("meta/episodes.jsonl", "meta/tasks.jsonl"):
        assert jsonl(out.root / rel) == jsonl(ref.root / rel)
    for x, y in zip(
        jsonl(ref.meta_dir / "episodes_stats.jsonl"),
        jsonl(out.meta_dir / "episodes_stats.jsonl"),
        strict=True,
    ):
        assert list(y["stats"]) == list(x["stats"])
    for ep in ref.episode_indices:  # the values and `datasets`' schema, byte for byte
        assert pq.read_table(out.data_file(ep)).equals(
            pq.read_table(ref.data_file(ep)), check_metadata=True
        )


def test_hf_schema_metadata_follows_the_target_versions_datasets():
    v30 = {
        b"huggingface": json.dumps(
            {
                "info": {"features": {"a": {"feature": {"_type": "Value"}, "_type": "List"}}},
                "fingerprint": "f",
            }
        ).encode(),
        b"other": b"kept",
    }
    v21 = hf_schema_metadata(v30, "v2.1")
    assert json.loads(v21[b"huggingface"]) == {
        "info": {"features": {"a": {"feature": {"_type": "Value"}, "_type": "Sequence"}}}
    }
    assert v21[b"other"] == b"kept"
    back = json.loads(hf_schema_metadata(v21, "v3.0")[b"huggingface"])
    assert back["info"]["features"]["a"]["_type"] == "List"
    assert hf_schema_metadata(None, "v2.1") is None
    assert hf_schema_metadata({b"huggingface": b"not json"}, "v2.1") == {
        b"huggingface": b"not json"
    }


# --------------------------------------------------------------------------- cutting


def test_remux_obstacle_decides_when_an_episode_can_be_cut():
    ip = [Packet(0, -1, True), Packet(1, 0, False), Packet(2, 1, True), Packet(3, 2, False)]
    assert remux_obstacle(ip, [0, 1]) is None
    assert remux_obstacle(ip, [2, 3]) is None
    assert "not a key frame" in remux_obstacle(ip, [1, 2, 3])
    assert "no frames" in remux_obstacle(ip, [])
    # open GOP: a frame shown before the key frame that comes first in decoding order
    leading = [Packet(4, 2, True), Packet(3, 3, False), Packet(5, 4, False)]
    assert "before its first key frame" in remux_obstacle(leading, [0, 1, 2])
    assert "interleaved" in remux_obstacle(ip, [0, 2])


def test_span_members_takes_each_episodes_frames_by_time():
    from fractions import Fraction

    tb = Fraction(1, 10240)
    pk = [Packet(i * 1024, i * 1024, i % 2 == 0) for i in range(10)]
    spans = [EpisodeSpan(0, 0.0, 3), EpisodeSpan(1, 0.3, 5)]
    assert span_members(pk, tb, spans, fps=10) == {0: [0, 1, 2], 1: [3, 4, 5, 6, 7]}


def one_key_frame(src: Path, dst: Path) -> None:
    """`src` encoded again in H.264 with a key frame only at the start: later episodes of a
    v3.0 file made from it do not start on key frames."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream(
            "libx264", rate=10, options={"x264-params": "keyint=1000:scenecut=0", "bf": "0"}
        )
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            new = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            new.pts = i
            out.mux(stream.encode(new))
        out.mux(stream.encode(None))


def test_an_episode_not_starting_on_a_key_frame_is_reencoded_and_said(tmp_path, capsys):
    src = lerobot_copy(V30_H264, tmp_path)
    video = LeRobotDataset(src).video_file(0, CAMERA)
    one_key_frame(video, tmp_path / "one_key.mp4")
    os.replace(tmp_path / "one_key.mp4", video)
    source = LeRobotDataset(src)
    out = run_convert(src, tmp_path / "v21", "v2.1")
    captured = capsys.readouterr()
    assert f"{CAMERA}: episode(s) 1, 2 re-encoded in the same codec" in captured.err
    assert "is not a key frame" in captured.err
    assert "(1 cut without re-encoding, 2 re-encoded)" in captured.out
    shared = packets(video)
    assert packets(out.video_file(0, CAMERA)) == shared[:30]  # episode 0 is cut
    for ep in (1, 2):
        a = np.stack(list(source.iter_camera_frames(ep, CAMERA))).astype(float)
        b = np.stack(list(out.iter_camera_frames(ep, CAMERA))).astype(float)
        assert a.shape == b.shape
        assert np.abs(a - b).mean() < 8  # lossy, but the same pictures
        assert out.read_episode(ep).equals(source.read_episode(ep))


def test_videos_with_other_codec_headers_go_to_files_of_their_own(tmp_path):
    """v2.1 -> v3.0 joins packets of videos encoded alike; one encoded otherwise (here H.264
    among AV1) starts a new video file rather than being re-encoded."""
    src = lerobot_copy(V21_AV1, tmp_path, outcomes=False)
    video = LeRobotDataset(src).video_file(1, CAMERA)
    one_key_frame(video, tmp_path / "h264.mp4")
    os.replace(tmp_path / "h264.mp4", video)
    source = LeRobotDataset(src)
    out = run_convert(src, tmp_path / "v30", "v3.0")
    assert [out.video_file(ep, CAMERA).name for ep in (0, 1, 2)] == [
        "file-000.mp4",
        "file-001.mp4",
        "file-002.mp4",
    ]
    assert [out.video_span(ep, CAMERA)[0] for ep in (0, 1, 2)] == [0.0, 0.0, 0.0]
    assert_same_episodes(source, out)
    for ep in (0, 1, 2):
        assert packets(out.video_file(ep, CAMERA)) == packets(source.video_file(ep, CAMERA))


# --------------------------------------------------------------------------- refusals


def refused(args: list[str], capsys) -> str:
    assert convert.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel convert: error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_bad_inputs_are_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    src = lerobot_copy(V30_H264, tmp_path, outcomes=False)
    out = tmp_path / "out"
    assert "--to 'v4'" in refused([str(src), str(out), "--to", "v4"], capsys)
    assert "already LeRobot v3.0" in refused([str(src), str(out), "--to", "v3.0"], capsys)
    assert "inside the dataset" in refused([str(src), str(src / "o"), "--to", "v2.1"], capsys)
    assert "inside the dataset" in refused([str(src), str(src), "--to", "v2.1"], capsys)
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "not an empty folder" in refused([str(src), str(out), "--to", "v2.1"], capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    video = LeRobotDataset(src).video_file(0, CAMERA)
    video.unlink()
    line = refused([str(src), str(tmp_path / "new"), "--to", "v2.1"], capsys)
    assert "incomplete" in line and f"videos/{CAMERA}/chunk-000/file-000.mp4" in line
    (src / "meta" / "info.json").unlink()
    assert "meta/info.json: missing" in refused(
        [str(src), str(tmp_path / "new"), "--to", "v2.1"], capsys
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [V30_H264, "out"]


def test_an_empty_out_folder_is_filled(tmp_path):
    src = lerobot_copy(V21_AV1, tmp_path, outcomes=False)
    (tmp_path / "out").mkdir()
    assert run_convert(src, tmp_path / "out", "v3.0").total_episodes == 3


def test_a_failed_convert_leaves_no_folder_behind(tmp_path, monkeypatch):
    import pipelines.dataset.convert as library

    src = lerobot_copy(V30_H264, tmp_path, outcomes=False)

    def fail(*a, **k):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(library, "commit_staged", fail)
    with pytest.raises(RuntimeError):
        library.convert_dataset(src, tmp_path / "out", "v2.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [V30_H264]


def test_a_killed_convert_leaves_no_out_that_looks_complete(tmp_path):
    """Killed (SIGKILL) at the last moment, with every file written: OUT does not exist; the
    work is in OUT.tmp-*, which no reader mistakes for OUT."""
    src = lerobot_copy(V21_AV1, tmp_path, outcomes=False)
    child = (
        "import os, signal, sys\n"
        "os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from pipelines import convert\n"
        "sys.exit(convert.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", child, str(src), str(tmp_path / "out"), "--to", "v3.0"]
    done = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not (tmp_path / "out").exists()
    (left,) = tmp_path.glob("out.tmp-*")
    assert (left / "meta" / "info.json").exists()  # it had got that far
