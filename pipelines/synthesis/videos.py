"""An episode's camera videos, written frame by frame (synth's rollouts, collect's episodes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.dataset import V21, ImageStats, VideoWriter, episode_video_path, temp_path_for
from pipelines.simulator.tasks import CAMERAS
from pipelines.synthesis.config import DatasetLayout


def episode_video(root: str, version: str, episode: int, key: str) -> Path:
    """Where an episode's video is written: its place (v2.1), or a temporary that the v3.0
    writer concatenates into the camera's shared video files."""
    if version == V21:
        return episode_video_path(root, episode, key)
    return temp_path_for(Path(root) / "videos" / key / f"episode_{episode:06d}.mp4")


class EpisodeVideos:
    """Each camera's video of one episode (`episode_video`), with its image statistics."""

    def __init__(self, root: str, layout: DatasetLayout, episode: int):
        size = layout.image_size
        self.stats = {k: ImageStats() for k in CAMERAS}
        self.paths = {k: episode_video(root, layout.format, episode, k) for k in CAMERAS}
        self.writers = {
            k: VideoWriter(self.paths[k], layout.fps, size, size, layout.vcodec) for k in CAMERAS
        }

    def write(self, observation: dict[str, np.ndarray]) -> None:
        """One frame of every camera."""
        for k, w in self.writers.items():
            image = observation[k]
            w.write(image)
            self.stats[k].add(image)

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()

    def close(self) -> None:
        """Close every camera's writer; when one fails, the others are aborted (their
        temporaries removed, their encoders flushed no further) before the error goes on."""
        writers = list(self.writers.values())
        for i, w in enumerate(writers):
            try:
                w.close()
            except BaseException:
                for rest in writers[i + 1 :]:
                    rest.abort()
                raise
