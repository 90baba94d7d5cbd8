"""Feature statistics as LeRobot keeps them (per episode, and aggregated)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def numeric_stats(values: np.ndarray) -> dict:
    """LeRobot v2.1 per-episode stats of one feature (values: frames x dims)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    return {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [int(v.shape[0])],
    }


def table_stats(table: pa.Table) -> dict[str, dict]:
    """Stats of every numeric/bool column of an episode table (strings are skipped)."""
    stats = {}
    for f in table.schema:
        typ = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
            continue
        col = table.column(f.name).combine_chunks()
        if pa.types.is_fixed_size_list(f.type):
            arr = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), f.type.list_size)
        else:
            arr = col.to_numpy(zero_copy_only=False)
        if len(arr):
            stats[f.name] = numeric_stats(arr.astype(np.float64))
    return stats


class ImageStats:
    """Per-channel stats of a camera's frames, as LeRobot keeps them (values in [0, 1])."""

    def __init__(self):
        self.count = 0
        self._sum = np.zeros(3)
        self._sq = np.zeros(3)
        self._lo = np.full(3, 255.0)
        self._hi = np.zeros(3)

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        pixels = rgb.shape[0] * rgb.shape[1]
        mean, std = cv2.meanStdDev(rgb)  # in C++: numpy's reductions cost 50x more here
        self._sum += mean[:, 0] * pixels
        self._sq += (std[:, 0] ** 2 + mean[:, 0] ** 2) * pixels
        for c, channel in enumerate(cv2.split(rgb)):
            lo, hi, _, _ = cv2.minMaxLoc(channel)
            self._lo[c], self._hi[c] = min(self._lo[c], lo), max(self._hi[c], hi)
        self.count += pixels

    def result(self) -> dict:
        mean = self._sum / max(self.count, 1)
        std = np.sqrt(np.maximum(self._sq / max(self.count, 1) - mean**2, 0.0))

        def shape(v):  # LeRobot's C x 1 x 1
            return [[[float(x) / 255.0]] for x in v]

        return {
            "min": shape(self._lo),
            "max": shape(self._hi),
            "mean": shape(mean),
            "std": shape(std),
            "count": [self.count],
        }
