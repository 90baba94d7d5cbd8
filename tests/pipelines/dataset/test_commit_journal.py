"""Item 1 and 6 of issue 22: the commit journal is untrusted; readers finish or refuse commits."""

import json
import os
import subprocess
import uuid

import pytest

from pipelines import dataset as dsl
from pipelines.dataset import JOURNAL, DatasetError, EpisodeRecorder, LeRobotDataset
from pipelines.dataset import lock as lock_module
from tests.pipelines.dataset.conftest import PYTHON, child_env


def _temp_name(target: str) -> str:
    return f".{target}.flywheel-{uuid.uuid4().hex}.tmp"


def _hostile_journals(root, outside):
    tmp = _temp_name("x")
    yield {"replace": [[tmp, str(outside)]]}, tmp  # absolute target
    yield {"replace": [[tmp, "../x"]]}, tmp  # climbing out
    yield {"replace": [[tmp, "meta/../../x"]]}, tmp
    yield {"replace": [["payload", "meta/info.json"]]}, "payload"  # not a temporary
    yield {"replace": [[tmp, "meta/info.json"]]}, tmp  # not the target's temporary
    yield {"replace": [[f"meta/{_temp_name('info.json')}", "data/info.json"]]}, None
    yield {}, None
    yield [], None
    yield {"replace": {"a": "b"}}, None
    yield {"replace": [[tmp]]}, tmp  # a one-element pair
    yield {"replace": [[tmp, 3]]}, tmp  # not strings
    yield {"replace": ["ab"]}, None


def _snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
    )


def test_hostile_journals_move_nothing(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    outside = tmp_path / "bashrc"
    outside.write_text("mine")
    for journal, payload in _hostile_journals(root, outside):
        for p in root.iterdir():
            p.unlink()
        if payload:
            (root / payload).write_text("payload")
        (root / JOURNAL).write_text(json.dumps(journal))
        before = _snapshot(root)
        with pytest.raises(DatasetError) as e:
            dsl.finish_interrupted_commit(root)
        assert "\n" not in str(e.value) and str(root) in str(e.value), journal
        assert _snapshot(root) == before, journal
        assert outside.read_text() == "mine" and not (tmp_path / "x").exists()


def test_unreadable_journals_are_one_line_errors(tmp_path):
    for text in (b"{not json", b"\xff\xfe", b"[1, 2"):
        (tmp_path / JOURNAL).write_bytes(text)
        with pytest.raises(DatasetError, match="unreadable commit journal"):
            dsl.finish_interrupted_commit(tmp_path)


def test_a_good_journal_is_still_finished(tmp_path):
    (tmp_path / "meta").mkdir()
    tmp = f"meta/{_temp_name('info.json')}"
    (tmp_path / tmp).write_text("new")
    (tmp_path / "meta" / "info.json").write_text("old")
    (tmp_path / JOURNAL).write_text(json.dumps({"replace": [[tmp, "meta/info.json"]]}))
    assert dsl.finish_interrupted_commit(tmp_path) == 1
    assert (tmp_path / "meta" / "info.json").read_text() == "new"
    assert not (tmp_path / JOURNAL).exists()


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_writers_refuse_a_hostile_journal(tmp_path, version):
    """Through the recorder (v2.1) and the v3.0 appender: nothing outside is overwritten."""
    from tests.pipelines.dataset.conftest import record

    root = tmp_path / "ds"
    record(root, version)
    outside = tmp_path / "bashrc"
    outside.write_text("mine")
    tmp = _temp_name("bashrc")
    (root / tmp).write_text("payload")
    (root / JOURNAL).write_text(json.dumps({"replace": [[tmp, str(outside)]]}))
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        EpisodeRecorder(root, fps=10, task="t", joint_names=["a", "b"], cameras={})
    if version == "v3.0":
        with pytest.raises(DatasetError, match="leaves the dataset folder"):
            dsl.V30Appender(root, {})
    assert outside.read_text() == "mine" and (root / tmp).exists()
    assert not dsl.holds_writer_lock(root)  # released after the refusal


def test_a_staged_file_that_vanished_fails_the_commit(tmp_path):
    a = dsl.stage_text(tmp_path / "a.txt", "a")
    b = dsl.stage_text(tmp_path / "b.txt", "b")
    b.unlink()  # another writer's start-up removed it
    with pytest.raises(DatasetError, match="vanished before its commit"):
        dsl.commit_staged(tmp_path, [(a, tmp_path / "a.txt"), (b, tmp_path / "b.txt")])
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / JOURNAL).exists()


# ----------------------------------------------------------------------------- item 6: readers


def _interrupted(root):
    """`root` with a commit killed half-way: info.json's new version staged and journaled."""
    info = json.loads((root / "meta" / "info.json").read_text())
    info["robot_type"] = "relabeled"
    tmp = dsl.stage_json(root / "meta" / "info.json", info)
    rel = [[str(tmp.relative_to(root)), "meta/info.json"]]
    (root / JOURNAL).write_text(json.dumps({"replace": rel}))


def test_a_reader_finishes_an_interrupted_commit(tiny):
    _interrupted(tiny)
    ds = LeRobotDataset(tiny)
    assert ds.info["robot_type"] == "relabeled" and not (tiny / JOURNAL).exists()
    assert not (tiny / lock_module.LOCK).exists()


def test_a_reader_refuses_while_another_writer_holds_the_dataset(tiny21):
    _interrupted(tiny21)
    code = (
        "import sys; from pipelines.dataset import WriterLock\n"
        f"lock = WriterLock({str(tiny21)!r}, 'flywheel label', tidy=False)\n"
        "print('locked', flush=True); sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [PYTHON, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetError) as e:
            LeRobotDataset(tiny21)
        msg = str(e.value)
        assert "\n" not in msg and JOURNAL in msg and f"pid {child.pid}" in msg, msg
        assert "flywheel label" in msg and "wait for it to end" in msg
        assert (tiny21 / JOURNAL).exists()
    finally:
        child.communicate("go\n", timeout=60)
    assert LeRobotDataset(tiny21).info["robot_type"] == "relabeled"


def test_a_reader_of_a_read_only_folder_says_what_to_do(tiny21, monkeypatch):
    _interrupted(tiny21)
    real = os.access
    monkeypatch.setattr(
        lock_module.os, "access", lambda p, m: False if m == os.W_OK else real(p, m)
    )
    with pytest.raises(DatasetError, match=r"read-only; open the dataset once where it is wr"):
        LeRobotDataset(tiny21)
    assert (tiny21 / JOURNAL).exists()
