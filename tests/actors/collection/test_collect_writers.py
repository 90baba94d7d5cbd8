"""`flywheel collect`: one writer at a time, an OUT that cannot be written, the log's folder."""

import os
import subprocess
import sys
from pathlib import Path

from actors.collection import driver
from pipelines import collect
from pipelines.dataset import temp_path_for
from pipelines.selection import propensity
from pipelines.selection.propensity import LOG_NAME, PropensityLog

ROOT = Path(__file__).resolve().parents[3]

# Another process holding OUT's writer lock until its stdin closes.
HOLDER = """
import sys
from pipelines.dataset import exclusive_writer
lock = exclusive_writer(sys.argv[1], "a test's writer", tidy=False)
print("held", flush=True)
sys.stdin.read()
"""


def _no_ray(*_a, **_k):
    raise AssertionError("Ray started")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_second_writer_is_one_line_and_the_first_loses_nothing(tmp_path, capsys, monkeypatch):
    """Before the lock, collect's start-up deleted an interrupted collect's data, videos and
    temporaries whoever was writing them."""
    monkeypatch.setattr(driver, "connect", _no_ray)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOG_NAME).write_text("")  # an interrupted collect's folder...
    staged = temp_path_for(out / "videos" / "chunk-000" / "front" / "episode_000000.mp4")
    staged.write_bytes(b"being encoded")  # ... another writer's file in flight
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _files(out)
        assert collect.main([str(out), "--episodes", "1"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "another writer" in line and f"pid {holder.pid}" in line, line
        assert _files(out) == before and staged.read_bytes() == b"being encoded"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()


def test_creating_the_log_fsyncs_its_folder(tmp_path, monkeypatch, fsyncs):
    synced = fsyncs
    with PropensityLog(tmp_path):
        pass
    assert str(tmp_path) in synced  # the new file's name is durable
    synced.clear()
    with PropensityLog(tmp_path):  # opening an existing log creates no name
        pass
    assert str(tmp_path) not in synced
    assert propensity.log_path(tmp_path).exists()
