"""Item 5 of issue 22: one writer at a time (a flock in the dataset root), two processes."""

import subprocess

import numpy as np
import pytest

from pipelines import dataset as dsl
from pipelines.dataset import LOCK, DatasetError, EpisodeRecorder, LeRobotDataset
from tests.pipelines.dataset.conftest import PYTHON, child_env, record

# A first writer in another process: records an episode up to its staged files, says so, and
# waits for a line on stdin before it saves (or for EOF, then exits without saving).
FIRST_WRITER = """
import sys
import numpy as np
from pipelines.dataset import EpisodeRecorder
rec = EpisodeRecorder(sys.argv[1], fps=10, task="t", joint_names=["a", "b"],
                      cameras={"front": (16, 16)}, version=sys.argv[2], vcodec="mpeg4")
rec.begin()
for i in range(4):
    rec.add(np.zeros(2, np.float32), np.zeros(2, np.float32),
            {"front": np.full((16, 16, 3), 40 * i, np.uint8)})
print("staged", flush=True)
if sys.stdin.readline().strip() == "save":
    rec.save(success=True)
    rec.close()
    print("saved", flush=True)
"""


def _first_writer(root, version):
    child = subprocess.Popen(
        [PYTHON, "-c", FIRST_WRITER, str(root), version],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    assert child.stdout.readline().strip() == "staged"
    return child


def _temporaries(root):
    return sorted(p for p in root.rglob("*") if dsl.atomic.is_temp(p.name))


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_second_writer_is_refused_and_removes_nothing(tmp_path, version):
    root = tmp_path / "ds"
    record(root, version, episodes=1, camera=True)  # the child appends to it
    child = _first_writer(root, version)
    try:
        staged = _temporaries(root)
        assert staged  # the child's video, being written
        with pytest.raises(DatasetError) as e:
            EpisodeRecorder(root, fps=10, task="t", joint_names=["a", "b"], cameras={})
        msg = str(e.value)
        assert "\n" not in msg and str(root) in msg and f"pid {child.pid}" in msg, msg
        assert "recording episodes" in msg
        if version == "v3.0":
            with pytest.raises(DatasetError, match=f"pid {child.pid}"):
                dsl.V30Appender(root, {})
        with pytest.raises(DatasetError, match=f"pid {child.pid}"):
            dsl.write_meta(root, info={"codebase_version": "v2.1"})
        assert _temporaries(root) == staged  # the second writer's start-up removed nothing
        out, _ = child.communicate("save\n", timeout=120)
        assert child.returncode == 0 and out.strip() == "saved"
    finally:
        if child.poll() is None:
            child.kill()
    ds = LeRobotDataset(root)
    assert sorted(ds.episodes) == [0, 1] and not ds.missing()
    assert not (root / LOCK).exists()
    record(root, version, episodes=1, camera=True)  # the lock is free again
    assert len(LeRobotDataset(root).episodes) == 3


def test_a_killed_writer_releases_the_lock_and_its_leftovers_are_removed(tmp_path):
    root = tmp_path / "ds"
    record(root, "v3.0", episodes=1, camera=True)
    child = _first_writer(root, "v3.0")
    child.kill()
    child.wait(timeout=60)
    assert _temporaries(root)  # what it left
    rec = EpisodeRecorder(
        root, fps=10, task="t", joint_names=["a", "b"], cameras={"front": (16, 16)}
    )
    assert not _temporaries(root)  # removed by the next writer, holding the lock
    rec.close()


def test_the_lock_is_reentrant_in_one_process_and_released_by_the_last(tmp_path):
    with dsl.exclusive_writer(tmp_path, "outer") as outer:
        assert dsl.holds_writer_lock(tmp_path) and (tmp_path / LOCK).exists()
        staged = dsl.stage_text(tmp_path / "a.txt", "a")
        with dsl.exclusive_writer(tmp_path, "inner"):
            assert staged.exists()  # a nested hold does not tidy
        assert dsl.holds_writer_lock(tmp_path)
        outer.release()
        outer.release()  # twice is harmless
        assert not dsl.holds_writer_lock(tmp_path) and not (tmp_path / LOCK).exists()
    with dsl.exclusive_writer(tmp_path, "again"):
        assert not staged.exists()  # a first hold removes stale temporaries


def test_recorder_close_releases_the_dataset(tmp_path):
    rec = record(tmp_path / "ds", close=False)
    assert dsl.holds_writer_lock(tmp_path / "ds")
    rec.close()
    assert not dsl.holds_writer_lock(tmp_path / "ds")
    np.testing.assert_equal(sorted(LeRobotDataset(tmp_path / "ds").episodes), [0, 1])
