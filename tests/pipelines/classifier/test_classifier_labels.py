"""Reward-classifier labels: the success-frames CSV, next.reward, the files recorders write."""

import numpy as np
import pytest

from pipelines.classifier import labels as lab
from pipelines.dataset import DatasetError

SEED_002 = """episode,success_start,env_reset_start,success_ranges
0,63,119,
4,67,129,67-77;89-128
8,55,nan,
"""


def test_seed_002_rows_give_its_labels():
    rows = lab.parse_success_csv(SEED_002, "s.csv")
    y, keep = rows[0].arrays(140)
    assert keep.sum() == 119 and not keep[119:].any()  # reset frames excluded
    assert y[:63].sum() == 0 and y[63:119].all() and rows[0].success_start == 63
    y, keep = rows[4].arrays(140)
    assert np.flatnonzero(y).tolist() == list(range(67, 78)) + list(range(89, 129))
    assert keep.sum() == 129
    y, keep = rows[8].arrays(70)  # no reset frames: success to the end
    assert keep.all() and y[55:].all() and not y[:55].any()


def test_headerless_pandas_floats_and_failed_episodes():
    rows = lab.parse_success_csv("# labels\n0,63.0,119.0\n\n1,nan,nan\n2,,40\n", "x.csv")
    assert rows[0].success_start == 63 and rows[0].reset_start == 119
    y, keep = rows[1].arrays(30)
    assert not y.any() and keep.all()
    y, keep = rows[2].arrays(50)
    assert not y.any() and keep.sum() == 40


@pytest.mark.parametrize(
    "text, message",
    [
        ("episode,success_start,env_reset_start\n0,63,x\n", "line 2: env_reset_start 'x'"),
        ("episode,success_start,env_reset_start\n0,63\n", "line 2: 2 fields, expected 3"),
        ("episode,success_start\n0,63\n", "line 1: header"),
        ("episode,success_start,env_reset_start,notes\n", "line 1: header"),
        ("0,63,119\n0,10,20\n", "line 2: episode 0 is labeled twice .also on line 1"),
        ("0,120,119\n", "line 1: success_start 120 is not before env_reset_start 119"),
        ("0,-3,\n", "line 1: success_start '-3' is not a frame number"),
        ("0,63.5,\n", "line 1: success_start '63.5'"),
        ("4,67,129,67-77;70-90\n", "line 1: success_ranges 67-77 and 70-90 overlap"),
        ("4,67,129,67-77;99-89\n", "line 1: success_ranges '99-89' ends before it starts"),
        ("4,67,129,67-77;a-b\n", "line 1: success_ranges 'a-b' is not a range"),
        ("4,60,129,67-77\n", "line 1: success_start 60 but success_ranges starts at 67"),
        ("4,67,100,67-77;89-128\n", "line 1: success_ranges reach frame 128, past env_reset_start"),
        ("", "no rows"),
    ],
)
def test_a_bad_csv_names_the_row(text, message):
    with pytest.raises(DatasetError, match=message) as e:
        lab.parse_success_csv(text, "labels.csv")
    assert "\n" not in str(e.value) and str(e.value).startswith("labels.csv")


@pytest.mark.parametrize(
    "text, message",
    [
        ("15,3,\n", "line 1: episode 15 is not in the dataset .0-1."),
        ("0,10,\n1,40,\n", "line 2: success_start 40 is past its end .episode 1 has 30 frames"),
        ("0,5,45\n", "line 1: env_reset_start 45 is past its end"),
        ("0,2,,2-4;38-41\n", "line 1: success_ranges reach frame 41, past its end"),
    ],
)
def test_rows_are_checked_against_the_dataset(text, message):
    rows = lab.parse_success_csv(text, "l.csv")
    with pytest.raises(DatasetError, match=message):
        lab.check_against(rows, {0: 40, 1: 30}, "l.csv")


def test_rows_within_the_episodes_pass():
    rows = lab.parse_success_csv("0,10,40\n1,29,\n", "l.csv")  # reset at the very end: none
    lab.check_against(rows, {0: 40, 1: 30}, "l.csv")


def test_next_reward_labels():
    e = lab.from_reward(3, np.array([0, 0, 1, 1, 0, 1], np.float32), "ep3")
    y, keep = e.arrays(6)
    assert y.tolist() == [0, 0, 1, 1, 0, 1] and keep.all()
    assert lab.from_reward(0, np.zeros(4), "ep0").success == ()
    with pytest.raises(DatasetError, match="ep1: next.reward is 0.5 at frame 2"):
        lab.from_reward(1, np.array([0, 0, 0.5]), "ep1")
    with pytest.raises(DatasetError, match="at frame 0"):
        lab.from_reward(1, np.array([np.nan]), "ep1")


def test_written_csv_reads_back_the_same_frames(tmp_path):
    episodes = [
        lab.from_mask(0, np.r_[np.zeros(10), np.ones(5)].astype(bool)),  # to the end
        lab.from_mask(1, np.zeros(8, bool)),  # failed
        lab.from_mask(2, np.r_[0, 1, 1, 0, 0, 1, 1, 0].astype(bool)),  # gaps
        lab.EpisodeLabels(3, ((4, None),), reset_start=9),
    ]
    path = lab.write_success_csv(tmp_path / "ds_success_frames.csv", episodes)
    text = path.read_text()
    assert text.splitlines()[0] == "episode,success_start,env_reset_start,success_ranges"
    assert "2,1,,1-2;5-6" in text and "0,10,," in text
    back = lab.read_success_csv(path)
    for e, n in zip(episodes, (15, 8, 8, 12), strict=True):
        for a, b in zip(e.arrays(n), back[e.episode].arrays(n), strict=True):
            assert np.array_equal(a, b), e
    only_plain = lab.format_success_csv(episodes[:2] + episodes[3:])
    assert only_plain.splitlines()[0] == "episode,success_start,env_reset_start"
    assert lab.success_csv_path(tmp_path / "runs" / "ds") == tmp_path / "runs" / (
        "ds" + lab.CSV_SUFFIX
    )
    with pytest.raises(DatasetError, match="no such success-frames CSV"):
        lab.read_success_csv(tmp_path / "nope.csv")
