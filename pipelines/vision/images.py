"""Images: resizing frames for the models."""

from __future__ import annotations

import cv2
import numpy as np


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """`frame` (H x W x C) as size x size, by area interpolation; a copy only when needed."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
