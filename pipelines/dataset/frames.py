"""Random access to camera frames: one decoded frame per call, what a training loader asks for.

`FrameReader(dataset).frame(episode, key, i)` gives the RGB uint8 frame i of an episode's
camera, the same pixels `LeRobotDataset.iter_camera_frames` gives (and LeRobot's pyav path):
the frame whose presentation time is within `TIMESTAMP_TOLERANCE_S` of the episode's
`from_timestamp` + i / fps, decoded from the key frame at or before it. What makes it cheap:

- each video file stays open once read (its index is parsed once: a v3.0 file holds many
  episodes), the least recently used closed past `max_open`, as LeRobot's torchcodec path caches
  its decoders;
- one decoder thread: a frame-threaded decoder decodes several frames past the one asked for
  before it returns it, work thrown away on the next seek;
- the seek goes to the frame's own time (no tick of margin), so a frame that is itself a key
  frame is decoded alone: 1.5 frames per access on average with LeRobot's g=2, not 2.5.

Whole episodes read faster through `iter_camera_frames` (no seeks, a threaded decoder). Only
video features: image features are read with their episode's table.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from pipelines.dataset.errors import DatasetError
from pipelines.dataset.layout import LeRobotDataset
from pipelines.dataset.video import TIMESTAMP_TOLERANCE_S, _av, _open, _reason


class FrameReader:
    def __init__(self, dataset: LeRobotDataset, max_open: int = 32):
        self.dataset = dataset
        self.max_open = max_open
        self._open: OrderedDict = OrderedDict()  # path -> (container, stream, reformatter)

    def frame(self, episode_index: int, key: str, frame_index: int) -> np.ndarray:
        ds = self.dataset
        feature = ds.features.get(key)
        if feature is None or feature.get("dtype") != "video":
            raise DatasetError(f"{ds.root}/meta/info.json: no video feature {key!r}")
        n = ds.episode_length(episode_index)
        if not 0 <= frame_index < n:
            raise DatasetError(
                f"{ds.root}: episode {episode_index} has {n} frames, no frame {frame_index}"
            )
        codec = (feature.get("info") or {}).get("video.codec")
        path = ds.video_file(episode_index, key)
        start, _ = ds.video_span(episode_index, key)
        target = float(start) + frame_index / float(ds.fps)
        av = _av()
        container, stream, rgb24 = self._video(path, codec)
        tb = stream.time_base
        try:
            container.seek(
                max(int(round(target / float(tb))), 0),
                backward=True,
                any_frame=False,
                stream=stream,
            )
            for decoded in container.decode(stream):
                if decoded.pts is None:
                    continue
                t = float(decoded.pts * tb)
                if t <= target - TIMESTAMP_TOLERANCE_S:
                    continue  # from the key frame up to the one asked for
                if t >= target + TIMESTAMP_TOLERANCE_S:
                    break
                return np.ascontiguousarray(rgb24.reformat(decoded, format="rgb24").to_ndarray())
        except (av.FFmpegError, ValueError) as e:
            self._close(path)
            raise DatasetError(
                f"{path}: PyAV cannot decode this video (codec {codec or 'unknown'}): {_reason(e)}"
            ) from e
        raise DatasetError(
            f"{path}: no frame at t={target:.4f} s (episode {episode_index} frame {frame_index}, "
            f"codec {codec or 'unknown'})"
        )

    def _video(self, path, codec):
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        container, stream, _ = _open(path, codec)
        stream.codec_context.thread_count = 1
        self._open[path] = (container, stream, _av().video.reformatter.VideoReformatter())
        while len(self._open) > self.max_open:
            self._close(next(iter(self._open)))
        return self._open[path]

    def _close(self, path) -> None:
        opened = self._open.pop(path, None)
        if opened is not None:
            opened[0].close()

    def close(self) -> None:
        for path in list(self._open):
            self._close(path)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
