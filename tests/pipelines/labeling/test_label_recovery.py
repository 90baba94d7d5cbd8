"""`flywheel label` killed in the scan, the staging or the commit, then run again."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import label
from pipelines.dataset import (
    JOURNAL,
    LeRobotDataset,
)
from pipelines.dataset.atomic import is_temp
from pipelines.labeling.progress_dataset import make_progress_dataset
from tests.pipelines.labeling.helpers import ROOT, snapshot

pytestmark = pytest.mark.usefixtures("ray_cluster")


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
