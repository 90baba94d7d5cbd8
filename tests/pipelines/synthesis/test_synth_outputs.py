"""`flywheel synth OUT`: an OUT that cannot be written is one line before any work."""

from pathlib import Path

import pytest

from pipelines import synth
from pipelines.synthesis import driver
from pipelines.synthesis.videos import EpisodeVideos


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_out_that_cannot_be_written_is_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, where
):
    def no_ray(*_a, **_k):
        raise AssertionError("Ray started")

    monkeypatch.setattr(driver, "connect", no_ray)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = blocker / "out" if where == "under a file" else Path("/proc/flywheel-synth-out")
    assert synth.main([str(out), "--episodes", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("flywheel synth: error: ") and str(out) in line, line
    assert ("is a file, not a folder" if where == "under a file" else "inside /proc") in line
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"] and blocker.read_text() == "mine"


def test_a_failing_camera_close_aborts_the_other_cameras():
    events = []

    class Writer:
        def __init__(self, name, fails):
            self.name, self.fails = name, fails

        def close(self):
            events.append(("close", self.name))
            if self.fails:
                raise RuntimeError("stalled")

        def abort(self):
            events.append(("abort", self.name))

    videos = EpisodeVideos.__new__(EpisodeVideos)
    videos.writers = {"front": Writer("front", True), "wrist": Writer("wrist", False)}
    with pytest.raises(RuntimeError, match="stalled"):
        videos.close()
    assert events == [("close", "front"), ("abort", "wrist")]
