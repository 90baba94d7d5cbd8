"""`flywheel label` on bad and foreign input (one-line errors, nothing changed), v3.0, LeRobot's."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.dataset import (
    V21,
    V30,
    LeRobotDataset,
    episode_data_path,
    episode_rows,
    read_columns,
    write_parquet,
)
from pipelines.labeling.progress_dataset import make_progress_dataset
from tests.pipelines.labeling.helpers import ROOT, SHARED, expected_labels, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _break(root: Path, episode: int, fn):
    path = episode_data_path(root, episode)
    write_parquet(path, fn(read_columns(path)))


def _set(t: pa.Table, name: str, values) -> pa.Table:
    col = pa.array(values, type=t.schema.field(name).type)
    return t.set_column(t.column_names.index(name), name, col)


@pytest.mark.parametrize(
    "case, argv, message",
    [
        (
            "missing-column",
            [],
            r"data/chunk-000/episode_000004.parquet: missing column 'progress'$",
        ),
        ("nan", [], r"data/chunk-000/episode_000004.parquet: episode 4 frame 7: progress is nan$"),
        (
            "spg-range",
            ["--stage-nums", "2"],
            r"episode_000004.parquet: episode 4 frame 3: stage_progress_gt=1.5 is outside \[0, 1\]",
        ),
        ("unreadable", [], r"episode_000004.parquet: unreadable parquet footer"),
        ("empty", [], r"data: no chunk-\*/\*.parquet files \(empty dataset\)$"),
        ("no-info", [], r"meta/info.json: missing \(not a LeRobot dataset\)$"),
        ("bad-threshold", ["--threshold", "150"], r"--threshold 150.0: must be between 0 and 100"),
        ("bad-data-dir", ["--data-dir", "../x"], r"--data-dir '../x'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_dataset_untouched(small, capsys, case, argv, message):
    if case == "missing-column":
        _break(small, 4, lambda t: t.drop(["progress"]))
    elif case == "nan":
        _break(
            small,
            4,
            lambda t: _set(t, "progress", np.where(np.arange(t.num_rows) == 7, np.nan, 0.5)),
        )
    elif case == "spg-range":
        _break(
            small,
            4,
            lambda t: _set(t, "stage_progress_gt", np.where(np.arange(t.num_rows) == 3, 1.5, 0.5)),
        )
    elif case == "unreadable":
        episode_data_path(small, 4).write_bytes(b"PAR1 this is not a parquet file")
    elif case == "empty":
        shutil.rmtree(small / "data")
    elif case == "no-info":
        (small / "meta" / "info.json").unlink()
    before = snapshot(small)
    code, out, err = run_cli([small, *argv, "--no-mlflow"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flywheel label: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    assert snapshot(small) == before


def test_intervention_positive_without_interventions_warns_and_labels(small, capsys):
    """A lerobot-record recording marks no interventions: --intervention-positive (part of the
    outcome path's label command) then forces nothing, says so, and labels all the same."""
    for e in range(12):
        _break(small, e, lambda t: t.drop(["complementary_info.is_intervention", "data_type"]))
    code, _, err = run_cli(
        [small, "--intervention-positive", "--threshold", "30", "--no-mlflow"], capsys
    )
    assert code == 0, err
    assert "--intervention-positive forces no frame positive" in err
    labels = np.concatenate(
        [read_columns(episode_data_path(small, e), ["task_index"])["task_index"] for e in range(12)]
    )
    assert 0 < (labels % 2).mean() < 1  # both labels given


def _corrupt_column(path: Path, column: str) -> None:
    """Overwrite the data pages of one column (of the first row group) with junk."""
    meta = pq.read_metadata(path).row_group(0)
    (chunk,) = [
        meta.column(i)
        for i in range(meta.num_columns)
        if meta.column(i).path_in_schema.split(".list.")[0] == column
    ]
    data = bytearray(path.read_bytes())
    start = chunk.data_page_offset
    data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("version", [V21, V30])
def test_a_corrupt_column_the_scan_never_reads_changes_nothing(tmp_path, capsys, version):
    root = make_progress_dataset(
        tmp_path / "ds", episodes=12, seed=3, version=version, data_files_size_in_mb=0.01
    )
    victim = LeRobotDataset(root).data_files()[2]
    _corrupt_column(victim, "observation.state")
    read_columns(victim, ["progress", "episode_index", "task_index"])  # what the scan reads
    before = snapshot(root)
    code, _, err = run_cli([root, "--threshold", "30", "--no-mlflow"], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    rel = str(victim.relative_to(root))
    assert f"{rel}: unreadable parquet file" in line and "nothing was changed" in line, line
    assert snapshot(root) == before  # byte-identical, and no temporary left behind


def test_v30_dataset_is_relabeled_in_place(tmp_path, capsys):
    root = make_progress_dataset(
        tmp_path / "ds", episodes=12, seed=3, stage_nums=2, version=V30, data_files_size_in_mb=0.03
    )
    ds = LeRobotDataset(root)
    before = {p: read_columns(p) for p in ds.data_files()}
    assert 1 < len(before) < 12  # several files, several episodes in some
    stats_before = json.loads((root / "meta" / "stats.json").read_text())
    want = expected_labels(root, K=2, threshold=30)
    code, _, err = run_cli([root, "--threshold", "30", "--stage-nums", "2", "--no-mlflow"], capsys)
    assert code == 0, err

    ds = LeRobotDataset(root)
    texts = [
        "pick up the red cube, Advantage: negative",
        "pick up the red cube, Advantage: positive",
    ]
    assert ds.tasks == dict(enumerate(texts)) and ds.info["total_tasks"] == 2
    import pandas as pd  # as LeRobot reads it: the texts are the index

    assert pd.read_parquet(root / "meta" / "tasks.parquet")["task_index"].to_dict() == {
        t: i for i, t in enumerate(texts)
    }
    for path, old in before.items():
        new = read_columns(path)
        assert new.drop(["task_index"]).equals(old.drop(["task_index"]))
    rows = {r["episode_index"]: r for r in episode_rows(ds)}
    all_labels = []
    for e in ds.episode_indices:
        ti = ds.read_episode(e, ["task_index"])["task_index"].to_numpy()
        assert ti.tolist() == want[e].tolist()
        all_labels.append(ti)
        assert rows[e]["tasks"] == [texts[i] for i in sorted(set(ti.tolist()))]
        assert rows[e]["stats/task_index/mean"] == [pytest.approx(ti.mean())]
        assert rows[e]["stats/task_index/q50"] == [pytest.approx(np.quantile(ti, 0.5))]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert {k: v for k, v in stats.items() if k != "task_index"} == {
        k: v for k, v in stats_before.items() if k != "task_index"
    }
    labels = np.concatenate(all_labels)
    assert stats["task_index"]["mean"] == [pytest.approx(labels.mean())]
    assert stats["task_index"]["count"] == [len(labels)]


def _lerobot_dataset(name: str, tmp_path: Path) -> Path:
    for where in (ROOT / "tests" / "data", SHARED):
        if (where / name).is_dir():
            return Path(shutil.copytree(where / name, tmp_path / name))
    pytest.skip(f"{name} not present")


@pytest.mark.parametrize("name", ["lerobot061_v30_h264", "lerobot033_v21_av1"])
def test_datasets_lerobot_wrote_are_labeled_in_place(tmp_path, capsys, name):
    root = _lerobot_dataset(name, tmp_path)
    ds = LeRobotDataset(root)
    before = {e: ds.read_episode(e) for e in ds.episode_indices}
    videos = snapshot(root / "videos")
    want = expected_labels(root, K=1, threshold=30, chunk=10)
    code, _, err = run_cli([root, "--threshold", "30", "--chunk-size", "10", "--no-mlflow"], capsys)
    assert code == 0, err
    ds = LeRobotDataset(root)
    assert sorted(ds.tasks.values()) == [
        "pick the cube, Advantage: negative",
        "pick the cube, Advantage: positive",
    ]
    for e, old in before.items():
        new = ds.read_episode(e)
        assert new["task_index"].to_numpy().tolist() == want[e].tolist()
        assert new.drop(["task_index"]).equals(old.drop(["task_index"]))
    assert snapshot(root / "videos") == videos


def test_missing_progress_in_a_real_dataset(tmp_path, capsys):
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets not present")
    root = shutil.copytree(SHARED / "g1_v21_subset", tmp_path / "g1")
    before = snapshot(root)
    code, _, err = run_cli([root, "--no-mlflow"], capsys)
    assert code == 2
    assert "data/chunk-000/episode_000000.parquet: missing column 'progress'" in err
    assert "data for 99 episode(s) missing" in err  # the warning about absent files
    assert snapshot(root) == before


# ----------------------------------------------------------------------------- crash safety
