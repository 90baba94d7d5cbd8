"""OpenCVCamera: newest frame on a grab thread, and a loud end when frames stop."""

import time

import numpy as np
import pytest

from actors.camera import CameraError, OpenCVCamera
from pipelines.dataset import VideoWriter


def test_latest_frame_then_error_when_the_source_ends(tmp_path):
    path = tmp_path / "cam.mp4"
    # mpeg4: a codec every OpenCV build decodes (OpenCV's FFmpeg here decodes no AV1)
    with VideoWriter(path, fps=30, width=64, height=48, codec="mpeg4") as w:
        for t in range(20):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, : 3 * t + 3] = (200, 30, 30)
            w.write(frame)
    cam = OpenCVCamera(str(path), open_timeout_s=60)  # a liveness bound, even on a busy machine
    try:
        frame, stamp, count = cam.latest()
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and count >= 1
        assert abs(stamp - time.time()) < 60  # a wall-clock capture time, not a frame count
        assert frame[0, 0, 0] > 150 and frame[0, 0, 2] < 100  # RGB order
        deadline = time.time() + 60
        while cam.alive and time.time() < deadline:  # a file ends like an unplugged camera
            time.sleep(0.01)
        with pytest.raises(CameraError, match="no more frames"):
            cam.latest()
    finally:
        cam.close()


def test_a_camera_that_cannot_open_is_a_clear_error(tmp_path):
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVCamera(str(tmp_path / "missing.mp4"))
