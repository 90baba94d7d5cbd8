"""Cameras: the latest frame and when it was taken, from a real device or a simulator.

`OpenCVCamera` reads an OpenCV `VideoCapture` (a device index, a /dev/video path, a stream URL
or a file) on a grab thread that keeps only the newest frame, so a control loop never waits on
the device and never gets a stale buffered frame. `RobotCamera` puts the cameras of an emulated
robot (the simulator, in another process) behind the same interface. Both run as Ray actors
(`ray.remote(cls)`), with `latest()` and `close()`.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class CameraError(RuntimeError):
    pass


class OpenCVCamera:
    """An OpenCV capture read continuously on a background thread (RGB uint8 frames)."""

    def __init__(
        self,
        source: int | str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 5.0,
    ):
        import cv2

        self.source = source
        self._cap = cv2.VideoCapture(source)
        if not self._cap.isOpened():
            raise CameraError(f"camera {source!r}: OpenCV cannot open it")
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, width),
            (cv2.CAP_PROP_FRAME_HEIGHT, height),
            (cv2.CAP_PROP_FPS, fps),
        ):
            if value:
                self._cap.set(prop, value)
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._frame: np.ndarray | None = None
        self._stamp = 0.0
        self._count = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"camera-{source}", daemon=True)
        self._thread.start()
        self.wait_for_frame(open_timeout_s)

    def _grab(self) -> None:
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            if not ok:
                with self._new:
                    self._error = "no more frames (device disconnected or end of file)"
                    self._new.notify_all()
                return
            rgb = bgr[:, :, ::-1].copy()
            with self._new:
                self._frame, self._stamp = rgb, time.time()
                self._count += 1
                self._new.notify_all()

    def wait_for_frame(self, timeout_s: float) -> None:
        with self._new:
            if not self._new.wait_for(lambda: self._count or self._error, timeout_s):
                raise CameraError(f"camera {self.source!r}: no frame within {timeout_s} s")
            if not self._count:
                raise CameraError(f"camera {self.source!r}: {self._error}")

    def latest(self) -> tuple[np.ndarray, float, int]:
        """(frame, capture time, frame number) of the newest frame.

        Raises CameraError once the device stopped delivering frames: a recording never goes
        on with a frozen picture.
        """
        with self._lock:
            if self._error is not None or self._frame is None:
                raise CameraError(f"camera {self.source!r}: {self._error or 'no frame yet'}")
            return self._frame, self._stamp, self._count

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._cap.release()


class RobotCamera:
    """A camera of an emulated robot (an `EmulatedSO101`, or its Ray actor): renders on request."""

    def __init__(self, robot, key: str):
        self.source = key
        self._robot = robot
        self._count = 0

    def latest(self) -> tuple[np.ndarray, float, int]:
        render = self._robot.render
        if hasattr(render, "remote"):  # the robot is a Ray actor
            import ray

            frame = ray.get(render.remote(self.source))
        else:
            frame = render(self.source)
        self._count += 1
        return frame, time.time(), self._count

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass
