"""`flywheel label`: the labels, the metadata, dry runs, reruns, several tasks, --data-dir."""

import json

import numpy as np
import pyarrow as pa
import pytest

from pipelines.dataset import (
    LeRobotDataset,
    episode_data_path,
    read_columns,
    write_meta,
    write_parquet,
)
from pipelines.labeling.progress_dataset import make_progress_dataset
from tests.pipelines.labeling.helpers import expected_labels, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_labels_metadata_and_untouched_columns(small, capsys):
    before = {e: read_columns(p) for e, p in enumerate(LeRobotDataset(small).data_files())}
    want = expected_labels(small, K=2, threshold=30)
    code, out, err = run_cli(
        [small, "--threshold", "30", "--stage-nums", "2", "--no-mlflow"], capsys
    )
    assert code == 0, err
    assert "STAGE 1 REWARD STATISTICS (stage_progress_gt in [0.500, 1.000))" in out
    assert "Threshold value (top 30.0%):" in out

    ds = LeRobotDataset(small)
    assert (small / "meta" / "tasks.jsonl").read_text().splitlines() == [
        '{"task_index": 0, "task": "pick up the red cube, Advantage: negative"}',
        '{"task_index": 1, "task": "pick up the red cube, Advantage: positive"}',
    ]
    assert ds.info["total_tasks"] == 2
    positives = 0
    for e, old in before.items():
        new = ds.read_episode(e)
        assert new.schema.field("task_index").type == pa.int64()
        ti = new.column("task_index").to_numpy()
        assert ti.tolist() == want[e].tolist()
        positives += int(ti.sum())
        # every other column is exactly as before, schema metadata included
        assert new.drop(["task_index"]).equals(old.drop(["task_index"]))
        assert new.schema.metadata == old.schema.metadata
        texts = [ds.tasks[i] for i in sorted(set(ti.tolist()))]
        assert ds.episodes[e]["tasks"] == texts
        st = ds.episodes_stats[e]["task_index"]
        assert st["max"] == [int(ti.max())] and st["mean"] == [pytest.approx(ti.mean())]
    total = sum(len(v) for v in want.values())
    assert 0.2 * total < positives < 0.4 * total


def test_dry_run_prints_statistics_and_changes_nothing(small, capsys):
    before = snapshot(small)
    code, out, err = run_cli(
        [small, "--dry-run", "--discretion-type", "n_slices", "--n-slices", "4"], capsys
    )
    assert code == 0, err
    assert snapshot(small) == before
    lines = out.splitlines()
    assert lines[:6] == [
        f"Processing data from: {small}",
        "Discretization type: n_slices",
        "Number of slices: 4",
        "Progress offset: 50 frames",
        "Stage nums: 1",
        "-" * 80,
    ]
    assert "REWARD STATISTICS" in lines
    assert any(line.startswith("Frames count: ") for line in lines)
    assert [line[:7] for line in lines if line.startswith("  ") and "%:" in line] == [
        f"  {p:3d}%:" for p in range(0, 101, 10)
    ]
    assert "4-Slices Boundaries (higher reward -> higher task_index):" in lines
    assert sum(line.startswith("  task_index=") for line in lines) == 4
    assert lines[-1] == "Dry run mode - no files will be modified"


def test_relabeling_is_idempotent_and_keeps_the_base_task(small, capsys):
    assert run_cli([small, "--no-mlflow"], capsys)[0] == 0
    first = snapshot(small)
    assert run_cli([small, "--no-mlflow"], capsys)[0] == 0
    assert snapshot(small) == first
    code, _, _ = run_cli(
        [small, "--discretion-type", "n_slices", "--n-slices", "3", "--no-mlflow"], capsys
    )
    assert code == 0
    tasks = [json.loads(x)["task"] for x in (small / "meta/tasks.jsonl").read_text().splitlines()]
    assert tasks == [f"pick up the red cube, Advantage: {i}" for i in range(3)]


def test_task_flag_and_intervention_positive(tmp_path, capsys):
    root = make_progress_dataset(tmp_path / "ds", episodes=8, seed=5, intervention_rate=0.3)
    code, _, err = run_cli(
        [
            root,
            "--task",
            "fold the cloth",
            "--intervention-positive",
            "--threshold",
            "10",
            "--no-mlflow",
        ],
        capsys,
    )
    assert code == 0, err
    ds = LeRobotDataset(root)
    assert ds.tasks == {
        0: "fold the cloth, Advantage: negative",
        1: "fold the cloth, Advantage: positive",
    }
    n_interv = 0
    for e in ds.episode_indices:
        t = ds.read_episode(e, ["task_index", "complementary_info.is_intervention"])
        interv = t["complementary_info.is_intervention"].to_numpy(zero_copy_only=False)
        assert (t["task_index"].to_numpy()[interv] == 1).all()
        n_interv += int(interv.sum())
    assert n_interv > 0


def _two_task_dataset(tmp_path):
    root = make_progress_dataset(tmp_path / "ds", episodes=10, seed=9)
    ds = LeRobotDataset(root)
    episodes = []
    for e in ds.episode_indices:
        task = "stack the cups" if e % 3 == 0 else "wipe the table"
        idx = 1 if e % 3 == 0 else 0
        t = ds.read_episode(e)
        t = t.set_column(
            t.column_names.index("task_index"),
            "task_index",
            pa.array(np.full(t.num_rows, idx, dtype=np.int64)),
        )
        write_parquet(episode_data_path(root, e), t)
        episodes.append({"episode_index": e, "tasks": [task], "length": t.num_rows})
    write_meta(
        root, info=ds.info, tasks={0: "wipe the table", 1: "stack the cups"}, episodes=episodes
    )
    return root


def test_several_tasks_keep_each_episodes_text(tmp_path, capsys):
    root = _two_task_dataset(tmp_path)
    code, _, err = run_cli(
        [root, "--per-task-threshold", "--threshold", "50", "--no-mlflow"], capsys
    )
    assert code == 0, err
    ds = LeRobotDataset(root)
    assert ds.tasks == {
        0: "wipe the table, Advantage: negative",
        1: "wipe the table, Advantage: positive",
        2: "stack the cups, Advantage: negative",
        3: "stack the cups, Advantage: positive",
    }
    assert ds.info["total_tasks"] == 4
    per_task = {0: [], 1: []}
    for e in ds.episode_indices:
        ti = ds.read_episode(e, ["task_index"])["task_index"].to_numpy()
        want = {2, 3} if e % 3 == 0 else {0, 1}
        assert set(ti.tolist()) <= want
        per_task[1 if e % 3 == 0 else 0].append(ti % 2)
        assert all(t.startswith("stack" if e % 3 == 0 else "wipe") for t in ds.episodes[e]["tasks"])
    for labels in per_task.values():  # ~50 % positive within each task
        frac = np.concatenate(labels).mean()
        assert 0.4 < frac < 0.65


def test_data_dir_from_the_estimator(small, capsys):
    est = small / "data_KAI0_100"
    for p in LeRobotDataset(small).data_files():
        t = read_columns(p)
        adv_col = pa.array(np.linspace(-1, 1, t.num_rows, dtype=np.float32))
        dst = est / p.parent.name / p.name
        write_parquet(dst, t.append_column("absolute_advantage", adv_col))
    original = snapshot(small / "data")
    code, _, err = run_cli(
        [
            small,
            "--data-dir",
            "data_KAI0_100",
            "--advantage-source",
            "absolute_advantage",
            "--threshold",
            "30",
            "--no-mlflow",
        ],
        capsys,
    )
    assert code == 0, err
    assert snapshot(small / "data") == original
    ti = np.concatenate(
        [
            read_columns(p, ["task_index"])["task_index"].to_numpy()
            for p in sorted(est.rglob("*.parquet"))
        ]
    )
    assert 0.25 < ti.mean() < 0.35


# ----------------------------------------------------------------------------- errors
