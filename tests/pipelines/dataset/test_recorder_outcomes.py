"""The recorder writes each episode's outcome (`episode_success`) as it saves it, in v2.1 and
v3.0, appending to datasets whose episodes have outcomes or none (written before outcomes)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.dataset import V30, EpisodeRecorder, LeRobotDataset

CAMS = {"observation.images.front": (32, 32)}


def record(root, outcomes, version=None, cameras=CAMS):
    rec = EpisodeRecorder(
        root,
        fps=10,
        task="t",
        joint_names=["a", "b"],
        cameras=cameras,
        version=version,
        vcodec="mpeg4",
    )
    saved = []
    try:
        for outcome in outcomes:
            rec.begin()
            for i in range(3):
                img = np.full((32, 32, 3), 40 * i, np.uint8)
                rec.add(
                    np.full(2, i, np.float32), np.zeros(2, np.float32), dict.fromkeys(cameras, img)
                )
            saved.append(rec.save(success=bool(outcome), episode_success=outcome))
    finally:
        rec.close()
    return saved


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_outcomes_are_written_as_episodes_are_saved_and_appended(tmp_path, version):
    root = tmp_path / "ds"
    saved = record(root, [None, True], version)
    assert [s["episode_success"] for s in saved] == [None, True]
    assert LeRobotDataset(root).outcomes == {0: None, 1: True}
    record(root, [False, None])  # reopened: appended in the dataset's own version
    ds = LeRobotDataset(root)
    assert ds.version == version and ds.info["total_episodes"] == 4
    assert ds.outcomes == {0: None, 1: True, 2: False, 3: None}
    if version == V30:
        (path,) = sorted((root / "meta" / "episodes").rglob("*.parquet"))
        assert str(pq.read_schema(path).field("episode_success").type) == "bool"
    else:  # no key for an episode without an outcome, as LeRobot writes it
        rows = [
            json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()
        ]
        assert ["episode_success" in r for r in rows] == [False, True, True, False]
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_no_outcome_writes_nothing_new(tmp_path, version):
    """A recorder that knows no outcome writes the metadata LeRobot writes, nothing more."""
    root = tmp_path / "ds"
    record(root, [None, None], version)
    assert LeRobotDataset(root).outcomes == {0: None, 1: None}
    if version == V30:
        (path,) = sorted((root / "meta" / "episodes").rglob("*.parquet"))
        assert "episode_success" not in pq.read_schema(path).names
    else:
        assert "episode_success" not in (root / "meta/episodes.jsonl").read_text()


def test_an_outcome_must_be_a_boolean(tmp_path):
    with pytest.raises(TypeError, match="episode_success 'yes'"):
        record(tmp_path / "ds", ["yes"], cameras={})
    assert not (tmp_path / "ds" / "meta").exists()  # nothing saved
