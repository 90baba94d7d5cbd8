"""`flywheel synth`: plans, stage progress, the dataset it writes, determinism, errors."""

import hashlib

import numpy as np
import pytest

from pipelines import label, synth, synthesis
from pipelines.dataset import DatasetError, LeRobotDataset, read_video
from pipelines.simulator.tasks import CAMERAS


def test_mix_parsing_and_errors():
    assert synthesis.parse_mix("expert=3,failing=1") == {"expert": 0.75, "failing": 0.25}
    for bad, msg in [
        ("expert=1,pilot=1", "'pilot=1' is not <controller>=<weight>"),
        ("expert", "'expert' is not"),
        ("expert=x", "weight 'x' is not a number"),
        ("expert=-1", "must be >= 0"),
        ("expert=0", "add up to 0"),
    ]:
        with pytest.raises(DatasetError, match=msg):
            synthesis.parse_mix(bad)


@pytest.mark.parametrize(
    "task, task_text, sim, text",
    [
        ("reach_grasp", None, "reach_grasp", "reach and grasp the red cube"),
        ("pick-and-lift", None, "pick_lift", "pick up the red cube and lift it"),
        ("Pick_And_Lift", "lift it", "pick_lift", "lift it"),
        ("grab the red block", None, "reach_grasp", "grab the red block"),
    ],
)
def test_task_names_and_texts(task, task_text, sim, text):
    cfg = synthesis.SynthConfig(out="unused", episodes=1, task=task, task_text=task_text)
    cfg.validate()
    assert (cfg.task, cfg.text) == (sim, text)


def test_video_codec_option(tmp_path, capsys):
    cfg = synthesis.SynthConfig(out="unused", episodes=1)
    cfg.validate()
    assert cfg.vcodec == "av1"  # LeRobot's default, where PyAV has SVT-AV1
    for vcodec, size, msg in [
        ("vp9", 32, "--vcodec: video codec 'vp9': one of av1, h264, mpeg4"),
        ("h264", 33, "--image-size 33: video 33x33: h264 in yuv420p needs an even width"),
    ]:
        out = tmp_path / vcodec
        argv = [str(out), "--episodes", "1", "--vcodec", vcodec, "--image-size", str(size)]
        assert synth.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"flywheel synth: error: {msg}") and "\n" not in err
        assert not out.exists()


def test_task_text_twice_is_an_error():
    with pytest.raises(DatasetError, match="--task 'grab it': one of"):
        synthesis.SynthConfig(out="u", episodes=1, task="grab it", task_text="x").validate()


def test_plans_follow_the_mix_and_the_seed():
    cfg = synthesis.SynthConfig(out="unused", episodes=400, seed=7)
    mix = synthesis.parse_mix(cfg.mix)
    plans = synthesis.plan_episodes(cfg, mix)
    assert plans == synthesis.plan_episodes(cfg, mix)
    assert plans != synthesis.plan_episodes(
        synthesis.SynthConfig(out="u", episodes=400, seed=8), mix
    )
    counts = {n: sum(p.controller == n for p in plans) / 400 for n in mix}
    for name, share in mix.items():
        assert abs(counts[name] - share) < 0.06
    assert not any(p.supervised for p in plans if p.controller in synthesis.DEMONSTRATORS)
    watched = [p.supervised for p in plans if p.controller not in synthesis.DEMONSTRATORS]
    assert 0.3 < np.mean(watched) < 0.7
    assert len({p.seed for p in plans}) == 400


def test_stage_progress_is_the_stage_plus_the_position_in_it():
    stages = np.array([0, 0, 0, 1, 1, 0, 1])
    scores = np.array(
        [[0.0, 0, 0], [0.5, 0, 0], [0.9, 0, 0], [1, 0.0, 0], [1, 0.6, 0], [0.7, 0, 0], [1, 1, 0]]
    )
    sp = synthesis.stage_progress(stages, scores[:, :2], 2)
    # reach: half the score; grasp: 0.5 + half; backing off drops it; held = 1
    assert sp.tolist() == pytest.approx([0, 0.25, 0.45, 0.5, 0.8, 0.35, 1.0])
    sp = synthesis.stage_progress(np.array([2, 1]), np.array([[1, 1, 0.5], [1, 0.3, 0]]), 3)
    assert sp.tolist() == pytest.approx([(2 + 0.5) / 3, (1 + 0.3) / 3])


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"episodes": 0}, "--episodes 0"),
        ({"mix": "expert=1,ghost=2"}, "'ghost=2' is not"),
        ({"image_size": 8}, "--image-size 8"),
        ({"operator": 1.5}, "--operator 1.5"),
    ],
)
def test_bad_options_write_nothing(tmp_path, capsys, opts, message):
    argv = [str(tmp_path / "new"), "--episodes", str(opts.get("episodes", 2))]
    for key in ("mix", "image_size", "operator"):
        if key in opts:
            argv += [f"--{key.replace('_', '-')}", str(opts[key])]
    assert synth.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "new").exists()


def test_existing_folder_is_not_touched(tmp_path, capsys):
    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    assert synth.main([str(keep.parent), "--episodes", "1"]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in keep.parent.iterdir()] == ["notes.txt"]


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


@pytest.mark.usefixtures("ray_cluster")
def test_dataset_reads_back_and_is_deterministic(tmp_path):
    mix = "expert=1,hesitant=1,noisy=1,failing=1"
    # v2.1: the episodes' own videos and episodes_stats.jsonl are read below
    cfg = dict(episodes=6, seed=3, mix=mix, operator=1.0, image_size=48, format="v2.1")
    a = synthesis.run(synthesis.SynthConfig(out=str(tmp_path / "a"), **cfg), out=lambda *x: None)
    b = synthesis.run(synthesis.SynthConfig(out=str(tmp_path / "b"), **cfg), out=lambda *x: None)

    ds = LeRobotDataset(a.root)
    assert ds.info["total_episodes"] == 6 and ds.info["total_frames"] == a.frames
    assert ds.tasks == {0: "reach and grasp the red cube"}
    assert {ds.features[k]["info"]["video.codec"] for k in CAMERAS} == {"av1"}
    assert not ds.missing()
    index = []
    for ep in ds.episode_indices:
        t = ds.read_episode(ep)
        n = t.num_rows
        assert n == ds.episodes[ep]["length"] == a.episodes[ep]["length"]
        for key in CAMERAS:
            assert read_video(ds.video_file(ep, key)).shape == (n, 48, 48, 3)
        index += t["index"].to_pylist()
        assert t["frame_index"].to_pylist() == list(range(n))
        done = t["next.done"].to_pylist()
        assert done[-1] and not any(done[:-1])
        reward = t["next.reward"].to_numpy()
        assert reward.sum() == (1.0 if a.episodes[ep]["success"] else 0.0)
        spg = t["stage_progress_gt"].to_numpy()
        assert ((spg >= 0) & (spg <= 1)).all()
        kinds = set(t["data_type"].to_pylist())
        interv = t["complementary_info.is_intervention"].to_numpy(zero_copy_only=False)
        controller = a.episodes[ep]["controller"]
        if controller in synthesis.DEMONSTRATORS:
            assert kinds == {"demo"} and not interv.any()
        else:
            assert kinds <= {"auto", "intervention"}
            assert (np.array(t["data_type"].to_pylist()) == "intervention").tolist() == (
                interv.tolist()
            )
        assert ds.episodes_stats[ep]["observation.images.front"]["count"] == [
            n
        ]  # frames, as LeRobot counts
    assert index == list(range(a.frames))
    # each episode's outcome, as the simulator saw it (the operator rescues every one here)
    assert ds.outcomes == {ep: a.episodes[ep]["success"] for ep in ds.episode_indices}

    # same seed: identical parquet and identical decoded frames
    assert _digest(a.root) == _digest(b.root)
    for ep in (0, 5):
        for key in CAMERAS:
            va = read_video(LeRobotDataset(a.root).video_file(ep, key))
            vb = read_video(LeRobotDataset(b.root).video_file(ep, key))
            assert np.array_equal(va, vb)

    # and Stage 0 labels it
    res = label.run(
        label.LabelConfig(dataset=str(a.root), threshold=30, mlflow=False), out=lambda *x: None
    )
    assert res.frames == a.frames and res.counts[1] > 0


@pytest.mark.usefixtures("ray_cluster")
def test_v30_episodes_carry_their_outcome(tmp_path):
    made = synthesis.run(
        synthesis.SynthConfig(
            out=str(tmp_path / "ds"),
            episodes=3,
            seed=3,  # plans expert, expert, failing
            mix="expert=1,failing=1",
            operator=0.0,  # nobody rescues the failing controller
            image_size=32,
            vcodec="mpeg4",  # the layout: v3.0, the default
        ),
        out=lambda *x: None,
    )
    ds = LeRobotDataset(made.root)
    assert ds.version == "v3.0"
    for key in ("observation.state", "action"):  # LeRobot's names, and the joints' units
        assert ds.features[key]["names"][0] == "shoulder_pan.pos"
        assert ds.features[key]["units"] == ["degrees"] * 5 + ["range_0_100"]
    assert ds.outcomes == {m["episode_index"]: m["success"] for m in made.episodes}
    assert set(ds.outcomes.values()) == {True, False}
