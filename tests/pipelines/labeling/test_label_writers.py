"""`flywheel label` is one writer at a time, and refuses a damaged data file before any work."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.dataset import LOCK, LeRobotDataset, read_columns, write_parquet
from pipelines.dataset.atomic import is_temp
from tests.pipelines.labeling.helpers import ROOT, expected_labels, run_cli, snapshot

ARGS = ["--threshold", "30", "--stage-nums", "2", "--no-mlflow"]

# A real `flywheel label` that stops just before its commit: it writes the staged temporaries'
# names to READY (atomically) and waits for GO, then commits as usual.
PAUSED_LABEL = """
import os, sys, time
from pathlib import Path
from pipelines import label
from pipelines.labeling import driver

dataset, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
commit = driver.commit_staged

def paused(root, staged):
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text("\\n".join(str(t) for t, _ in staged))
    os.replace(tmp, ready)
    deadline = time.monotonic() + 600
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go on")
        time.sleep(0.01)
    return commit(root, staged)

driver.commit_staged = paused
sys.exit(label.main([dataset, *sys.argv[4:]]))
"""


def _stop(proc: subprocess.Popen) -> None:
    """Kill a job still running and every process it started (its local Ray cluster)."""
    import psutil

    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.kill()
    for p in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()
    psutil.wait_procs(children, timeout=60)


def test_a_second_label_while_one_holds_the_lock_is_one_line_and_loses_nothing(
    small, tmp_path, capsys
):
    want = expected_labels(small, K=2, threshold=30)
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_LABEL, str(small), str(ready), str(go), *ARGS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600  # a local Ray cluster on a busy machine
        while not ready.exists():
            if first.poll() is not None:
                pytest.fail(f"the first label ended early: {first.stderr.read()}")
            assert time.monotonic() < deadline, "the first label never staged its files"
            time.sleep(0.05)
        staged = [Path(p) for p in ready.read_text().split()]
        assert staged and all(p.exists() for p in staged)
        assert (small / LOCK).exists()
        before = snapshot(small)

        code, _, err = run_cli([small, *ARGS], capsys)  # the second writer
        assert code == 2
        (line,) = err.strip().splitlines()
        assert line.startswith("flywheel label: error: ") and "another writer" in line, line
        assert f"pid {first.pid}" in line and "flywheel label" in line.split("another")[1], line
        assert snapshot(small) == before  # the first's staged files are all still there

        go.touch()
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        go.touch()
        _stop(first)
        first.stderr.close()
    ds = LeRobotDataset(small)  # the first's labeling is whole
    for e, labels in want.items():
        assert ds.read_episode(e, ["task_index"]).column(0).to_numpy().tolist() == labels.tolist()
    assert not any(is_temp(p.name) for p in small.rglob("*"))
    assert not (small / LOCK).exists()


@pytest.mark.parametrize("damage", ["truncated", "short"])
def test_a_damaged_data_file_is_one_line_before_any_work(small, capsys, monkeypatch, damage):
    """A file the labels would not rewrite is read only in part: its footer and row count are
    checked first (before this, a file with fewer rows than its episode passed, exit 0)."""
    from pipelines.labeling import driver

    def no_ray(*_a, **_k):
        raise AssertionError("Ray started")

    monkeypatch.setattr(driver, "connect", no_ray)
    victim = LeRobotDataset(small).data_files()[3]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:-200])
    else:  # a whole parquet file, but with rows missing
        write_parquet(victim, read_columns(victim).slice(0, 5))
        pq.read_metadata(victim)
    before = snapshot(small)
    code, _, err = run_cli([small, *ARGS], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    rel = str(victim.relative_to(small))
    assert rel in line and "nothing was changed" in line, line
    assert ("footer" if damage == "truncated" else "5 rows") in line, line
    assert snapshot(small) == before
