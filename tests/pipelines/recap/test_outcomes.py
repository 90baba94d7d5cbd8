"""`flywheel outcomes`: episode_success written into LeRobot's own datasets, read back, and
bad input refused in one line with nothing written."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.dataset import DatasetError, EpisodeRecorder, LeRobotDataset
from pipelines.outcomes import main
from pipelines.recap import dataset_targets
from pipelines.recap.targets import episode_targets

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data"
RECORDING = REPO.parent / "shared" / "datasets" / "lerobot061_v30_recording"
RECORDING_CSV = RECORDING.parent / "lerobot061_v30_recording_outcomes.csv"
LEROBOT = {"v2.1": "lerobot033_v21_av1", "v3.0": "lerobot061_v30_h264"}


def files(root: Path) -> dict[str, bytes]:
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def episodes_meta(root: Path) -> list[Path]:
    v30 = sorted((root / "meta" / "episodes").rglob("*.parquet"))
    return [root / "meta" / "episodes.jsonl", *v30]


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("episode_index", "success"), *rows])
    return path


@pytest.fixture(params=["v2.1", "v3.0"])
def lerobot(request, tmp_path):
    """A copy of a dataset LeRobot itself wrote (v2.1 by 0.3.3, v3.0 by 0.6.1)."""
    root = tmp_path / "ds"
    shutil.copytree(DATA / LEROBOT[request.param], root)
    return root


def recorded(root: Path, version: str, successes) -> Path:
    rec = EpisodeRecorder(
        root, fps=10, task="t", joint_names=["a", "b"], cameras={}, version=version
    )
    for success in successes:
        rec.begin()
        for i in range(3):
            rec.add(np.full(2, i, np.float32), np.zeros(2, np.float32), {})
        rec.save(success=success)
    rec.close()
    return root


def test_csv_outcomes_in_lerobots_own_datasets(lerobot, tmp_path, capsys):
    before = files(lerobot)
    table = write_csv(tmp_path / "o.csv", [(0, "1"), (1, "false"), (2, "True")])
    assert main([str(lerobot), "--from", f"csv:{table}"]) == 0
    out = capsys.readouterr().out
    assert "'pick the cube': 2 success, 1 failure" in out
    assert f"csv:{table}: 2 success, 1 failure" in out
    ds = LeRobotDataset(lerobot)
    assert ds.outcomes == {0: True, 1: False, 2: True}
    after = files(lerobot)
    changed = {k for k in before if before[k] != after.get(k)}
    assert set(after) == set(before)  # no file added or left behind (lock, temporaries)
    assert changed == {str(p.relative_to(lerobot)) for p in episodes_meta(lerobot) if p.exists()}
    if ds.version == "v2.1":  # every key LeRobot wrote, in its place; the flag last
        old = [json.loads(line) for line in before["meta/episodes.jsonl"].decode().splitlines()]
        new = [json.loads(line) for line in after["meta/episodes.jsonl"].decode().splitlines()]
        assert [list(r)[:-1] for r in new] == [list(r) for r in old]
        assert [{k: v for k, v in r.items() if k != "episode_success"} for r in new] == old
    else:  # every column LeRobot wrote, unchanged, and a bool column
        (path,) = episodes_meta(lerobot)[1:]
        new = pq.read_table(path)
        assert str(new.schema.field("episode_success").type) == "bool"
        old = pq.read_table(DATA / LEROBOT["v3.0"] / path.relative_to(lerobot))
        assert new.drop_columns(["episode_success"]).equals(old)


def test_set_merges_with_earlier_outcomes(lerobot, capsys):
    assert main([str(lerobot), "--from", "set:1=failure"]) == 0
    assert LeRobotDataset(lerobot).outcomes == {0: None, 1: False, 2: None}
    assert "no outcome: 2 episode(s)" in capsys.readouterr().out
    assert main([str(lerobot), "--from", "set:0,2=success"]) == 0
    assert LeRobotDataset(lerobot).outcomes == {0: True, 1: False, 2: True}
    out = capsys.readouterr().out
    assert "set:0,2=success: 2 success, 0 failure" in out
    assert "kept from before: 0 success, 1 failure" in out
    assert main([str(lerobot), "--from", "set:1=success"]) == 0  # an outcome changed
    assert LeRobotDataset(lerobot).outcomes == {0: True, 1: True, 2: True}
    assert "warning: every episode is a success" in capsys.readouterr().out


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_reward_source(tmp_path, version, capsys):
    root = recorded(tmp_path / "ds", version, [True, False, True, False])
    assert main([str(root), "--from", "reward"]) == 0
    assert LeRobotDataset(root).outcomes == {0: True, 1: False, 2: True, 3: False}
    assert "reward: 2 success, 2 failure" in capsys.readouterr().out


def test_dry_run_writes_nothing(lerobot, capsys):
    before = files(lerobot)
    assert main([str(lerobot), "--from", "set:0=success", "--dry-run"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert files(lerobot) == before


BAD_CSV = {
    "unknown episode": [(0, 1), (7, 0)],
    "duplicate episode": [(0, 1), (1, 0), (0, 1)],
    "not a boolean": [(0, "yes")],
    "not an episode index": [("a", 1)],
    "no rows": [],
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_is_one_line_and_nothing_written(lerobot, tmp_path, capsys, case):
    table = write_csv(tmp_path / "o.csv", BAD_CSV[case])
    before = files(lerobot)
    assert main([str(lerobot), "--from", f"csv:{table}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flywheel outcomes: error: ") and "\n" not in err
    assert str(table) in err
    assert files(lerobot) == before


@pytest.mark.parametrize(
    "source",
    [
        "csv:",
        "foo",
        "set:1",
        "set:1=maybe",
        "set:a=success",
        "set:1,1=success",
        "set:9=failure",
        "reward",
        "classifier:ckpt",
        "csv:/no/such/file.csv",
    ],
)
def test_bad_source_is_one_line_and_nothing_written(lerobot, capsys, source):
    before = files(lerobot)  # these datasets have no next.reward
    assert main([str(lerobot), "--from", source]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flywheel outcomes: error: ") and "\n" not in err
    assert files(lerobot) == before


def test_no_dataset_creates_nothing(tmp_path, capsys):
    assert main([str(tmp_path / "none"), "--from", "reward"]) == 2
    assert not (tmp_path / "none").exists()
    assert "no such dataset folder" in capsys.readouterr().err


def test_hostile_outcome_is_one_line(lerobot):
    if LeRobotDataset(lerobot).version == "v2.1":
        path = lerobot / "meta" / "episodes.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[1]["episode_success"] = "yes"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        (path,) = episodes_meta(lerobot)[1:]
        table = pq.read_table(path)
        column = pa.array([None, "yes", None][: table.num_rows])
        pq.write_table(table.append_column("episode_success", column), path)
    with pytest.raises(DatasetError, match="episode_success is 'yes'"):
        LeRobotDataset(lerobot)


def test_targets_of_a_dataset(lerobot):
    with pytest.raises(DatasetError, match=f"flywheel outcomes {lerobot} --from"):
        dataset_targets(LeRobotDataset(lerobot))
    assert main([str(lerobot), "--from", "set:1=failure"]) == 0
    targets = dataset_targets(LeRobotDataset(lerobot), default_outcome="failure")
    # lengths 30, 45, 60 of one task: T_max 60; none succeeded
    for ep, n in ((0, 30), (1, 45), (2, 60)):
        np.testing.assert_allclose(targets[ep], episode_targets(n, False, 60))
    assert targets[1][0] == pytest.approx((-44 - 60) / 120)


def test_python_dash_m(lerobot):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.outcomes", str(lerobot), "--from", "set:0=success"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert LeRobotDataset(lerobot).episode_outcome(0) is True


@pytest.mark.skipif(not RECORDING_CSV.exists(), reason="the LeRobot-written recording is absent")
def test_the_lerobot_recording(tmp_path, capsys):
    root = tmp_path / "rec"
    shutil.copytree(RECORDING, root)
    before = files(root)
    assert main([str(root), "--from", f"csv:{RECORDING_CSV}"]) == 0
    with open(RECORDING_CSV) as f:
        truth = {int(r["episode_index"]): r["success"] == "1" for r in csv.DictReader(f)}
    ds = LeRobotDataset(root)
    assert ds.outcomes == truth
    after = files(root)
    assert {k for k in before if before[k] != after[k]} == {
        str(p.relative_to(root)) for p in episodes_meta(root)[1:]
    }
    wins = sum(truth.values())
    assert f"{wins} success, {len(truth) - wins} failure" in capsys.readouterr().out
    targets = dataset_targets(ds)
    assert all(t[-1] == 0.0 for ep, t in targets.items() if truth[ep])
    assert all(t[-1] == -0.5 for ep, t in targets.items() if not truth[ep])
