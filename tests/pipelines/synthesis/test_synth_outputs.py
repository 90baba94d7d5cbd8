"""Synthesis's videos: a camera whose close fails aborts the others."""

import pytest

from pipelines.synthesis.videos import EpisodeVideos


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
