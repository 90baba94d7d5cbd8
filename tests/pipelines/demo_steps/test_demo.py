"""`flywheel demo`'s steps and their bookkeeping (the whole demo is too long for the suite: it
is run by hand, see README's first command)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines import demo
from pipelines.dataset import EpisodeRecorder, LeRobotDataset
from pipelines.demo_steps import STEPS, Demo, DemoError, summary_table
from pipelines.demo_steps.offline import positive_share, record_outcomes
from pipelines.demo_steps.online import intervention_rates, window


def test_a_step_whose_inputs_are_missing_names_the_step_to_run_first(tmp_path, capsys):
    code = demo.main(["--out", str(tmp_path / "d"), "--stage", "3", "--no-mlflow"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "step 2" in err and "--stage 2" in err and "demo.json" in err


def test_a_step_out_of_range_is_refused(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--stage", str(len(STEPS) + 1)]) == 2
    assert "--stage" in capsys.readouterr().err


def test_a_corrupt_state_file_is_one_line(tmp_path, capsys):
    (tmp_path / "demo.json").write_text("{not json")
    assert demo.main(["--out", str(tmp_path), "--stage", "2", "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "demo.json" in err and "not JSON" in err


def test_steps_record_what_later_steps_need(tmp_path):
    d = Demo(tmp_path)
    d.record(1, frames=np.int64(7), rates={"bc": np.float32(0.5)})
    again = Demo(tmp_path)
    again.load()
    assert again.need(1) == {"frames": 7, "rates": {"bc": 0.5}}
    assert json.loads((tmp_path / "demo.json").read_text())["1"]["frames"] == 7
    with pytest.raises(DemoError, match="--stage 2"):
        again.need(2)


def test_the_positive_share_is_counted_per_controller():
    labels = {0: np.array([0, 1, 1, 1]), 1: np.array([0, 0]), 2: np.array([1, 0, 0, 0])}
    episodes = [
        {"episode_index": 0, "controller": "expert"},
        {"episode_index": 1, "controller": "failing"},
        {"episode_index": 2, "controller": "failing"},
    ]
    assert positive_share(labels, episodes) == {"expert": 0.75, "failing": 1 / 6}


def test_step_2_records_the_outcomes_as_a_user_would_from_a_csv(tmp_path, capsys):
    d = Demo(tmp_path)
    rec = EpisodeRecorder(d.dataset, fps=10, task="t", joint_names=["a", "b"], cameras={})
    for _ in range(3):
        rec.begin()
        for i in range(3):
            rec.add(np.full(2, i, np.float32), np.zeros(2, np.float32), {})
        rec.save(success=False)  # no outcome: what lerobot-record writes
    rec.close()
    assert LeRobotDataset(d.dataset).outcomes == {0: None, 1: None, 2: None}
    made = [(0, "expert", True), (1, "failing", False), (2, "noisy", True)]
    episodes = [{"episode_index": e, "controller": c, "success": ok} for e, c, ok in made]
    d.record(1, episodes=episodes)
    assert record_outcomes(d) == "2 of 3 episodes succeeded"
    assert d.outcomes_csv.read_text() == "episode_index,success\n0,1\n1,0\n2,1\n"
    assert LeRobotDataset(d.dataset).outcomes == {0: True, 1: False, 2: True}
    assert "2 success, 1 failure" in capsys.readouterr().out
    again = Demo(tmp_path)
    again.load()
    assert again.need(2)["successes"] == 2 and again.need(2)["csv"] == str(d.outcomes_csv)


def test_the_summary_table_has_a_row_per_step_and_a_total():
    table = summary_table([(1, "synthesize", "4 episodes", 3.2), (2, "label", "30 %", 1.0)])
    lines = table.splitlines()
    assert lines[0].startswith("| step |") and len(lines) == 5
    assert lines[2] == "| 1 | synthesize | 4 episodes | 3 s |"
    assert lines[-1] == "| | total | | 4 s |"


def test_the_intervention_rate_compares_the_first_and_last_episodes():
    eps = [{"intervention_steps": 8, "length": 10}] * 10 + [
        {"intervention_steps": 1, "length": 20}
    ] * 10
    eps = (
        eps
        + [{"intervention_steps": 0, "length": 10}] * 9
        + [{"intervention_steps": 2, "length": 10}]
    )
    first, last = intervention_rates(eps)
    assert first == 0.8  # the first 10 episodes
    assert last == 2 / 100  # the last 10 (the middle 10 are in neither)
    assert window(6) == 2 and window(2) == 1 and window(100) == 10
    assert intervention_rates([{"intervention_steps": 3, "length": 4}] * 2) == (0.75, 0.75)


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--episodes", "0"),
        ("--steps", "0"),
        ("--policy-steps", "0"),
        ("--policy-batch-size", "0"),
        ("--policy-image-size", "8"),
        ("--hilserl-steps", "0"),
        ("--mix", "expert=1,wizard=1"),
    ],
)
def test_bad_flags_are_refused_before_the_folder_is_touched(tmp_path, capsys, flag, value):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "demo.json").write_text("{}")
    assert demo.main(["--out", str(tmp_path), flag, value, "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert (tmp_path / "dataset").is_dir() and (tmp_path / "runs").is_dir()


def test_a_folder_that_is_not_a_demos_is_left_alone(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoError, match="no demo.json"):
        Demo(tmp_path).start_over()
    assert (tmp_path / "dataset").is_dir() and (tmp_path / "notes.txt").exists()


def test_a_whole_demo_removes_only_what_a_demo_made(tmp_path):
    for made in ("dataset", "runs"):
        (tmp_path / made).mkdir()
        (tmp_path / made / "x").write_text("old")
    (tmp_path / "demo.json").write_text("{}")
    (tmp_path / "outcomes.csv").write_text("episode_index,success\n")
    (tmp_path / "keep.txt").write_text("mine")
    Demo(tmp_path).start_over()
    assert not (tmp_path / "dataset").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "outcomes.csv").exists()
    assert not (tmp_path / "demo.json").exists() and (tmp_path / "keep.txt").exists()
