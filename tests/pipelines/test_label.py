"""`flywheel label` end to end on a local Ray cluster: labels, metadata, errors, crashes."""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import label
from pipelines.dataset import (
    JOURNAL,
    V21,
    V30,
    LeRobotDataset,
    episode_data_path,
    episode_rows,
    read_columns,
    write_meta,
    write_parquet,
)
from pipelines.dataset.atomic import is_temp
from pipelines.labeling import advantage as adv
from pipelines.labeling.progress_dataset import make_progress_dataset

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"

pytestmark = pytest.mark.usefixtures("ray_cluster")


def snapshot(root: Path, temps: bool = True) -> dict[str, str]:
    """Every file's hash (`temps=False`: leaving out the temporaries a writer stages)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (temps or not is_temp(p.name))
    }


def run_cli(argv, capsys):
    code = label.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def expected_labels(root: Path, K: int, threshold: float, chunk: int = 50) -> dict[int, np.ndarray]:
    """Labels computed straight from the pure functions, episode by episode."""
    ds = LeRobotDataset(root)
    eps = {e: ds.read_episode(e, ["progress", "stage_progress_gt"]) for e in ds.episode_indices}
    rewards = {e: adv.episode_rewards(t["progress"].to_numpy(), chunk) for e, t in eps.items()}
    stages = {e: adv.frame_stages(t["stage_progress_gt"].to_numpy(), K) for e, t in eps.items()}
    allr, alls = np.concatenate(list(rewards.values())), np.concatenate(list(stages.values()))
    dtype = np.float64 if K == 1 else np.float32
    cuts = {
        s: adv.compute_cuts(np.sort(allr[alls == s].astype(dtype)), "binary", threshold, 10)
        for s in range(K)
    }
    return {
        e: adv.assign_labels(rewards[e], stages[e].astype(np.int64), cuts, "binary", 10, K == 1)
        for e in eps
    }


@pytest.fixture()
def small(tmp_path):
    return make_progress_dataset(tmp_path / "ds", episodes=12, seed=3, stage_nums=2)


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
        ("unreadable", [], r"episode_000004.parquet: unreadable parquet file"),
        ("empty", [], r"data: no chunk-\*/\*.parquet files \(empty dataset\)$"),
        ("no-info", [], r"meta/info.json: missing \(not a LeRobot dataset\)$"),
        (
            "no-interv",
            ["--intervention-positive"],
            r"missing column 'complementary_info.is_intervention'",
        ),
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
    elif case == "no-interv":
        for e in range(12):
            _break(small, e, lambda t: t.drop(["complementary_info.is_intervention", "data_type"]))
    before = snapshot(small)
    code, out, err = run_cli([small, *argv, "--no-mlflow"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flywheel label: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    assert snapshot(small) == before


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


KILL_ARGS = ["--threshold", "30", "--stage-nums", "2", "--no-mlflow"]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a job and every process it started (its local Ray cluster), as a crash would.

    Ray's worker processes outlive a killed driver for a moment; left alive they could still
    stage files while the test looks at the dataset.
    """
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.kill()  # the driver through Popen, which reaps it and keeps its exit status
    for p in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()
    psutil.wait_procs(children, timeout=60)


@pytest.fixture(scope="module")
def unlabeled_and_labeled(tmp_path_factory, ray_cluster):
    """A 600-episode dataset, and the same labeled by an uninterrupted run."""
    where = tmp_path_factory.mktemp("kill")
    src = make_progress_dataset(
        where / "src", episodes=600, seed=11, min_length=30, max_length=60, stage_nums=2
    )
    clean = Path(shutil.copytree(src, where / "clean"))
    assert label.main([str(clean), *KILL_ARGS]) == 0
    return src, snapshot(clean)


@pytest.mark.parametrize("phase", ["scan", "staging", "commit"])
def test_killed_then_rerun_gives_the_uninterrupted_result(tmp_path, phase, unlabeled_and_labeled):
    src, clean = unlabeled_and_labeled
    args = KILL_ARGS
    victim = Path(shutil.copytree(src, tmp_path / "victim"))
    before = snapshot(victim)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    if phase == "commit":  # the process kills itself after putting 200 files in place
        env["FLYWHEEL_FAILPOINT"] = "commit:200"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.label", str(victim), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    data = victim / "data" / "chunk-000"
    try:
        if phase == "scan":  # as soon as the scan has started
            for line in proc.stdout:
                if line.startswith("Collecting rewards"):
                    break
        elif phase == "staging":  # as soon as the first relabeled file is staged
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                if any(is_temp(name) for name in os.listdir(data)):
                    break
                time.sleep(0.005)
        else:
            proc.wait(timeout=180)
    finally:
        _kill_tree(proc)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    journal = victim / JOURNAL
    if phase == "commit":
        assert journal.exists()
        changed = sum(snapshot(victim).get(k) != v for k, v in before.items())
        assert 0 < changed < 600  # killed halfway through putting the files in place
    else:  # nothing changed (temporaries aside), nothing to finish
        assert not journal.exists()
        assert snapshot(victim, temps=False) == before
    for f in LeRobotDataset(victim).data_files():  # no file is truncated or half-written
        pq.read_metadata(f)
    assert label.main([str(victim), *args]) == 0
    assert snapshot(victim) == clean


def test_mlflow_run_is_logged(small, mlflow_uri, capsys):
    code, out, err = run_cli([small, "--stage-nums", "2"], capsys)
    assert code == 0, err
    assert "MLflow run" in out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("flywheel-label")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["threshold"] == "70.0" and run.data.params["stage_nums"] == "2"
    m = run.data.metrics
    assert {"stage_0/threshold", "stage_1/threshold", "stage_0/frames"} <= set(m)
    assert m["label_count/task_index_0"] + m["label_count/task_index_1"] == m["frames"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"reward_histogram.png", "task_index_counts.tsv"} <= names


def test_existing_cluster_by_address(small):
    """`--ray-address` joins a cluster started with `ray start --head` (token auth)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).parent / "ray"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--block",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        cmd = [
            sys.executable,
            "-m",
            "pipelines.label",
            str(small),
            "--no-mlflow",
            "--ray-address",
            f"127.0.0.1:{port}",
        ]
        deadline = time.time() + 60
        while time.time() < deadline:  # the head's GCS needs a few seconds to listen
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**env, "RAY_AUTH_MODE": "token"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Task completed successfully" in proc.stdout
        assert LeRobotDataset(small).info["total_tasks"] == 2

    finally:  # the whole head (ray start --block and the processes it started) at once
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)


def test_missing_token_is_explained():
    from ray.exceptions import AuthenticationError

    from pipelines.runtime.cluster import _why

    try:
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: token is missing")
        except AuthenticationError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as e:
        assert "run with RAY_AUTH_MODE=token" in _why(e)
    assert _why(ConnectionError("Failed to connect\n to GCS")) == "Failed to connect to GCS"
