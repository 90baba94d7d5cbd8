"""Camera videos of a dataset: writing (atomic) and decoding (as a stream)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipelines.dataset.atomic import fsync_path, replace_durably, temp_path_for
from pipelines.dataset.errors import DatasetError

# Videos are MPEG-4 Part 2 ("mp4v") in .mp4: the codec every OpenCV wheel can both write and
# read (pip builds of OpenCV have no H.264 or AV1 encoder), and deterministic byte for byte.
VIDEO_CODEC = "mpeg4"
_VIDEO_FOURCC = "mp4v"


class VideoWriter:
    """Write an RGB video atomically: frames go to a temporary file, renamed on `close()`.

    Use as a context manager; on an exception the temporary file is removed and nothing
    appears at `path`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int):
        import cv2

        self._cv2 = cv2
        self.path = Path(path)
        self._tmp = temp_path_for(self.path)
        self._size = (int(width), int(height))
        self._writer = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*_VIDEO_FOURCC), float(fps), self._size
        )
        if not self._writer.isOpened():
            raise DatasetError(f"{self.path}: OpenCV cannot write {_VIDEO_FOURCC} video here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape[1::-1] != self._size or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype}, expected {self._size} uint8 RGB")
        self._writer.write(self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
        fsync_path(self._tmp)
        replace_durably(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.release()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fourcc_name(cap) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ")
    return text or "unknown"


def iter_video_frames(
    path: str | os.PathLike, start: int = 0, count: int | None = None, codec: str | None = None
):
    """Decode frames `start` .. `start + count - 1` of a video as RGB uint8 arrays, one at a time.

    A video OpenCV cannot open or decode (AV1 on many builds), or one with fewer frames than
    asked for, is a DatasetError naming the file and its codec; never silently fewer frames.
    `codec` is the codec the dataset's metadata names, used in the message.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: missing video")
    cap = cv2.VideoCapture(str(path))
    try:
        what = codec or _fourcc_name(cap)
        if not cap.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video (codec {what})")
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        done = 0
        while count is None or done < count:
            ok, bgr = cap.read()
            if not ok:
                break
            yield bgr[:, :, ::-1]
            done += 1
        if done == 0 and (count is None or count > 0):
            raise DatasetError(f"{path}: OpenCV decoded no frames (codec {what})")
        if count is not None and done < count:
            raise DatasetError(
                f"{path}: decoded {done} of {count} frames from frame {start} (codec {what})"
            )
    finally:
        cap.release()


def read_video(path: str | os.PathLike, codec: str | None = None) -> np.ndarray:
    """All frames of a (short) video as a T x H x W x 3 RGB uint8 array."""
    return np.stack(list(iter_video_frames(path, codec=codec)))


def video_feature(height: int, width: int, fps: float, codec: str) -> dict:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }
