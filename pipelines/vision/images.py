"""Images: resizing frames for the models."""

from __future__ import annotations

import cv2
import numpy as np


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """`frame` (H x W x C) as size x size, by area interpolation; a copy only when needed."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """DrQ's random-shift augmentation: each image of N x C x H x W x 3 padded by `pad` pixels
    (edges repeated) and cropped back at a random offset; a new array (`images` itself when
    `pad` is 0)."""
    if pad <= 0:
        return images
    n, c, h, w = images.shape[:4]
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy = rng.integers(0, 2 * pad + 1, size=(n, c))
    dx = rng.integers(0, 2 * pad + 1, size=(n, c))
    out = np.empty_like(images)
    for i in range(n):
        for j in range(c):
            out[i, j] = padded[i, j, dy[i, j] : dy[i, j] + h, dx[i, j] : dx[i, j] + w]
    return out
