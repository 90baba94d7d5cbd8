"""Video through PyAV: round trips per codec, seeking by timestamp, concatenation, errors, and
the two LeRobot-written datasets read exactly as LeRobot itself reads them."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines import dataset as dsl
from pipelines import inspect
from pipelines.dataset import DatasetError, LeRobotDataset

DATA = Path(__file__).resolve().parents[2] / "data"
REFERENCE = json.loads((DATA / "lerobot_frames.json").read_text())
CAMERA = "observation.images.front"


def _frames(n: int, h: int = 64, w: int = 64, shift: int = 0) -> np.ndarray:
    """Smooth images (a video codec's domain): a gradient and a red square that moves."""
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    frames[..., 1] = np.linspace(0, 200, w, dtype=np.uint8)[None, None, :]
    frames[..., 2] = np.linspace(40, 160, h, dtype=np.uint8)[None, :, None]
    for t in range(n):
        x = (2 + 3 * t + 7 * shift) % (w - 14)
        frames[t, 8:22, x : x + 12, 0] = 220
    return frames


def _write(path: Path, frames: np.ndarray, codec: str, fps: float = 10) -> Path:
    with dsl.VideoWriter(path, fps, frames.shape[2], frames.shape[1], codec=codec) as w:
        for f in frames:
            w.write(f)
    assert w.frames == len(frames)
    return path


def _sha(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()


@pytest.mark.parametrize("codec", ["av1", "h264", "hevc", "mpeg4"])
def test_round_trip_per_codec(tmp_path, codec):
    frames = _frames(12)
    path = _write(tmp_path / "v.mp4", frames, codec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no temporary left
    back = dsl.read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4  # lossy, the same video
    assert dsl.probe_video(path) == dsl.VideoProbe(codec, True, "")
    part = np.stack(list(dsl.iter_video_frames(path, start=5, count=4)))
    assert np.array_equal(part, back[5:9])
    timed = np.stack(list(dsl.iter_video_frames(path, 5, 4, from_timestamp=0.0, fps=10)))
    assert np.array_equal(timed, back[5:9])
    with pytest.raises(DatasetError, match=rf"v.mp4: decoded 7 of 10 frames .*codec {codec}\)"):
        list(dsl.iter_video_frames(path, start=5, count=10))


def test_encoding_is_deterministic(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    codec = dsl.default_video_codec()
    a = _write(tmp_path / "a.mp4", frames, codec)
    b = _write(tmp_path / "b.mp4", frames, codec)
    assert a.read_bytes() == b.read_bytes()
    assert np.array_equal(dsl.read_video(a), dsl.read_video(b))


def test_writer_options_and_abort(tmp_path):
    assert dsl.resolve_video_codec(None) == dsl.default_video_codec() == "av1"
    assert dsl.default_codec_note() is None
    assert dsl.resolve_video_codec(" H264 ") == "h264"
    with pytest.raises(DatasetError, match=r"video codec 'vp9': one of av1, h264, mpeg4"):
        dsl.VideoWriter(tmp_path / "x.mp4", 10, 64, 64, codec="vp9")
    with pytest.raises(DatasetError, match="63x64: h264 in yuv420p needs an even width"):
        dsl.VideoWriter(tmp_path / "x.mp4", 10, 63, 64, codec="h264")
    with pytest.raises(DatasetError, match="hevc is written at 64x64 or more"):
        dsl.VideoWriter(tmp_path / "x.mp4", 10, 48, 32, codec="hevc")
    assert not list(tmp_path.iterdir())

    aborted = tmp_path / "aborted.mp4"
    with pytest.raises(RuntimeError), dsl.VideoWriter(aborted, 10, 64, 64) as w:
        w.write(_frames(1)[0])
        raise RuntimeError("renderer crashed")
    assert not list(tmp_path.iterdir())
    w = dsl.VideoWriter(aborted, 10, 64, 64)
    with pytest.raises(ValueError, match="expected"):
        w.write(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(DatasetError, match="no frames were written"):
        w.close()
    assert not list(tmp_path.iterdir())


def test_video_feature_has_lerobot_061_keys():
    lerobot = json.loads((DATA / "lerobot061_v30_h264" / "meta" / "info.json").read_text())
    theirs = lerobot["features"][CAMERA]
    ours = dsl.video_feature(64, 64, 10, "h264")
    assert ours == theirs  # the same keys and values for LeRobot's own h264 settings
    av1 = dsl.video_feature(480, 640, 30, "av1")["info"]
    assert (av1["video.codec"], av1["video.preset"], av1["video.crf"], av1["video.g"]) == (
        "av1",
        12,
        30,
        2,
    )


@pytest.mark.parametrize("codec", ["av1", "h264", "mpeg4"])
def test_concatenate_then_seek_by_timestamp(tmp_path, codec):
    lengths = [7, 5, 9]
    inputs = [
        _write(tmp_path / f"ep{i}.mp4", _frames(n, shift=i), codec) for i, n in enumerate(lengths)
    ]
    alone = [dsl.read_video(p) for p in inputs]
    out = tmp_path / "videos" / "file-000.mp4"
    starts = dsl.concatenate_videos(inputs, out)
    assert starts == pytest.approx([0.0, 0.7, 1.2], abs=1e-9)
    assert [p.name for p in out.parent.iterdir()] == ["file-000.mp4"]
    assert len(dsl.read_video(out)) == sum(lengths)
    for want, start in zip(alone, starts, strict=True):
        got = list(dsl.iter_video_frames(out, count=len(want), from_timestamp=start, fps=10))
        assert np.array_equal(np.stack(got), want)  # remuxed: the very same frames
    # an episode's later frames only (a seek into the middle of an episode)
    got = list(dsl.iter_video_frames(out, 3, 4, from_timestamp=starts[2], fps=10))
    assert np.array_equal(np.stack(got), alone[2][3:7])
    # the last episode asked for more frames than the file holds
    with pytest.raises(DatasetError, match=r"decoded 9 of 10 frames from t=1.2000 s \(codec "):
        list(dsl.iter_video_frames(out, count=10, from_timestamp=starts[2], fps=10))
    # appending in place, as LeRobot grows a v3.0 file episode by episode
    more = _write(tmp_path / "ep3.mp4", _frames(4, shift=3), codec)
    assert dsl.concatenate_videos([out, more], out) == pytest.approx([0.0, 2.1], abs=1e-9)
    got = list(dsl.iter_video_frames(out, count=4, from_timestamp=2.1, fps=10))
    assert np.array_equal(np.stack(got), dsl.read_video(more))
    assert sorted(p.name for p in out.parent.iterdir()) == ["file-000.mp4"]


def test_concatenate_refuses_videos_that_differ(tmp_path):
    a = _write(tmp_path / "a.mp4", _frames(3), "h264")
    b = _write(tmp_path / "b.mp4", _frames(3, h=32, w=64), "h264")
    c = _write(tmp_path / "c.mp4", _frames(3), "mpeg4")
    for other, what in ((b, "h264 64x32"), (c, "mpeg4 64x64")):
        with pytest.raises(DatasetError, match=f"{other.name}: {what} yuv420p, cannot join"):
            dsl.concatenate_videos([a, other], tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists() and len(list(tmp_path.iterdir())) == 3


def test_undecodable_and_missing_videos_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x1cftypav01" + b"\0" * 99)
    with pytest.raises(DatasetError) as e:
        dsl.read_video(broken, codec="av1")
    assert str(e.value).startswith(f"{broken}: PyAV cannot open this video (codec av1)")
    assert "\n" not in str(e.value)
    probe = dsl.probe_video(broken, "av1")
    assert not probe.decodable and probe.codec == "av1" and "cannot open" in probe.reason
    with pytest.raises(DatasetError, match="missing video"):
        dsl.read_video(tmp_path / "nope.mp4")
    # cut in half: without its index (at the end) it does not open; with the index first
    # (concatenate_videos writes it there) what is there decodes, then the error
    whole = _write(tmp_path / "whole.mp4", _frames(40), "h264")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cut.mp4: PyAV cannot open this video \(codec h264\)"):
        list(dsl.iter_video_frames(cut, count=40, codec="h264"))
    dsl.concatenate_videos([whole], whole)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    got = []
    with pytest.raises(DatasetError, match=r"cut.mp4: .*codec h264\)"):
        got.extend(dsl.iter_video_frames(cut, count=40))
    assert 0 < len(got) < 40


# ----------------------------------------------------------------------------- LeRobot's files


def _columns(ds: LeRobotDataset, episode: int) -> dict[str, np.ndarray]:
    """The episode's columns as Flywheel reads them, n x d (as the reference hashes them)."""
    table = ds.read_episode(episode)
    out = {}
    for key in REFERENCE_COLUMNS:
        col = table.column(key).combine_chunks()
        if hasattr(col, "flatten"):
            col = col.flatten()
        values = col.to_numpy(zero_copy_only=False)
        assert values.dtype in (np.float32, np.int64), (key, values.dtype)
        out[key] = np.ascontiguousarray(values.reshape(table.num_rows, -1))
    return out


REFERENCE_COLUMNS = (
    "observation.state",
    "action",
    "progress",
    "stage_progress_gt",
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
)


@pytest.mark.parametrize("name", ["lerobot033_v21_av1", "lerobot061_v30_h264"])
def test_lerobot_datasets_read_exactly_as_lerobot_reads_them(name):
    """Frames and values equal to LeRobot 0.6.1's own reading (tests/data/lerobot_frames.json,
    made by tests/data/make_lerobot_reference.py): max abs difference 0."""
    ds = LeRobotDataset(DATA / name)
    want = REFERENCE["datasets"][name]["episodes"]
    assert ds.episode_indices == [int(e) for e in want]
    for e, ref in want.items():
        episode = int(e)
        frames = list(ds.iter_camera_frames(episode, CAMERA))
        assert len(frames) == ref["length"] == ds.episode_length(episode)
        assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
        assert [_sha(f) for f in frames] == ref["frames"]
        assert len(set(ref["frames"])) > ref["length"] // 2  # the frames do differ
        columns = _columns(ds, episode)
        assert {k: _sha(v) for k, v in columns.items()} == ref["tabular"]
        tasks = {ds.tasks[int(i)] for i in columns["task_index"].ravel()}
        assert sorted(tasks) == ref["tasks"]


def test_v30_episode_spans_are_read_by_timestamp():
    ds = LeRobotDataset(DATA / "lerobot061_v30_h264")
    path = ds.video_file(0, CAMERA)
    whole = dsl.read_video(path)  # the three episodes, one after the other
    first = 0
    for e in ds.episode_indices:
        start, end = ds.video_span(e, CAMERA)
        n = ds.episode_length(e)
        assert (start, end) == pytest.approx((first / ds.fps, (first + n) / ds.fps))
        assert np.array_equal(np.stack(list(ds.iter_camera_frames(e, CAMERA))), whole[first:][:n])
        first += n


def test_image_features_are_decoded_with_pillow(tmp_path):
    import io

    import pyarrow as pa
    from PIL import Image

    from pipelines.labeling.progress_dataset import make_progress_dataset

    root = tmp_path / "images"
    make_progress_dataset(root, episodes=1, min_length=4, max_length=4, seed=0)
    ds = LeRobotDataset(root)
    table = ds.read_episode(0)
    frames = _frames(table.num_rows, 24, 32)
    cells, want = [], []
    for i, frame in enumerate(frames):
        buf = io.BytesIO()
        image = Image.fromarray(frame)
        if i % 2:  # JPEG, decoded as Pillow decodes it (as LeRobot's image features are)
            image.save(buf, format="JPEG", quality=90)
            want.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        else:
            image.save(buf, format="PNG")
            want.append(frame)
        cells.append({"bytes": buf.getvalue(), "path": None})
    typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = table.append_column("observation.images.top", pa.array(cells, typ))
    dsl.write_parquet(ds.data_file(0), table)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.images.top"] = {"dtype": "image", "shape": [24, 32, 3]}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    got = list(LeRobotDataset(root).iter_camera_frames(0, "observation.images.top"))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.uint8 and np.array_equal(g, w)


def test_inspect_decodes_the_first_frame_of_every_camera(tmp_path, capsys):
    for name, codec in (("lerobot033_v21_av1", "av1"), ("lerobot061_v30_h264", "h264")):
        assert inspect.main([str(DATA / name)]) == 0
        out = capsys.readouterr().out
        assert f"{CAMERA}: {codec} video, 64x64, episode 0 decodes" in out
    root = Path(shutil.copytree(DATA / "lerobot033_v21_av1", tmp_path / "broken"))
    ds = LeRobotDataset(root)
    ds.video_file(0, CAMERA).write_bytes(b"\x00\x00\x00\x1cftypav01" + b"\0" * 99)
    assert inspect.main([str(root)]) == 1  # a camera that does not decode is a problem
    lines = [line for line in capsys.readouterr().out.splitlines() if "damaged" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"  {CAMERA}: av1 video, file damaged or not a video")
    assert "episode_000000.mp4" in lines[0] and "PyAV cannot open this video" in lines[0]


def test_recorder_writes_its_codec_and_appending_keeps_the_datasets(tmp_path):
    root = tmp_path / "rec"
    cams = {CAMERA: (64, 64)}

    def record(vcodec=None):
        rec = dsl.EpisodeRecorder(
            root, fps=10, task="t", joint_names=["a", "b"], cameras=cams, vcodec=vcodec
        )
        rec.begin()
        for f in _frames(3):
            rec.add(np.zeros(2), np.zeros(2), {CAMERA: f})
        rec.save(success=True)
        return rec

    assert record("mpeg4").vcodec == "mpeg4"
    assert record().vcodec == "mpeg4"  # appending: the dataset's codec
    ds = LeRobotDataset(root)
    assert ds.features[CAMERA]["info"]["video.codec"] == "mpeg4"
    assert [dsl.probe_video(ds.video_file(e, CAMERA)).codec for e in (0, 1)] == ["mpeg4"] * 2
    with pytest.raises(DatasetError, match="the videos are mpeg4; appending keeps"):
        record("av1")
    with pytest.raises(DatasetError, match="63x64: av1 in yuv420p needs an even"):
        dsl.EpisodeRecorder(
            tmp_path / "odd", fps=10, task="t", joint_names=["a"], cameras={CAMERA: (64, 63)}
        )
