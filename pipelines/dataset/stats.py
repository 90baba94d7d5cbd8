"""Feature statistics as LeRobot keeps them: per episode, and aggregated over a dataset.

Every numeric feature gets `min`, `max`, `mean`, `std`, `count` (frames) and the quantiles
`q01`, `q10`, `q50`, `q90`, `q99` that LeRobot's QUANTILES normalization reads, one value per
dimension. Camera features get the same per channel, in [0, 1], shaped C x 1 x 1, with `count`
the number of frames (LeRobot's convention, not a pixel count).

Image statistics come from an exact per-channel histogram of every pixel of every frame (LeRobot
samples about a hundred downsized frames per episode): mean, std, extremes and quantiles all
follow from the 3 x 256 counts, which OpenCV's calcHist gathers in C++, 4x faster than
numpy's bincount here; the simulator writes hundreds of frames per second.

`aggregate_stats` combines per-episode stats the way LeRobot does: extremes of the extremes,
count-weighted means, the pooled standard deviation, count-weighted means of the quantiles.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def numeric_stats(values: np.ndarray) -> dict:
    """Per-episode stats of one feature (values: frames, or frames x dims)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    out = {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [int(v.shape[0])],
    }
    qs = np.quantile(v, list(QUANTILES.values()), axis=0)
    for name, q in zip(QUANTILES, qs, strict=True):
        out[name] = q.tolist()
    return out


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
    """Per-channel stats of a camera's frames (see the module docstring)."""

    def __init__(self):
        self.frames = 0
        self._hist = np.zeros((3, 256), np.float64)

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        for c in range(3):
            self._hist[c] += cv2.calcHist([rgb], [c], None, [256], [0, 256]).reshape(256)
        self.frames += 1

    def result(self) -> dict:
        levels = np.arange(256) / 255.0
        total = np.maximum(self._hist.sum(axis=1), 1.0)
        mean = (self._hist * levels).sum(axis=1) / total
        var = (self._hist * levels**2).sum(axis=1) / total - mean**2
        present = self._hist > 0
        lo = np.array([levels[p].min() if p.any() else 0.0 for p in present])
        hi = np.array([levels[p].max() if p.any() else 0.0 for p in present])
        cdf = np.cumsum(self._hist, axis=1) / total[:, None]

        def shape(v):  # LeRobot's C x 1 x 1
            return [[[float(x)]] for x in v]

        out = {
            "min": shape(lo),
            "max": shape(hi),
            "mean": shape(mean),
            "std": shape(np.sqrt(np.maximum(var, 0.0))),
            "count": [self.frames],
        }
        for name, q in QUANTILES.items():  # the smallest level whose cumulative share reaches q
            out[name] = shape([levels[min(int(np.searchsorted(c, q)), 255)] for c in cdf])
        return out


def aggregate_stats(episodes: Iterable[dict[str, dict]]) -> dict[str, dict]:
    """The dataset's stats (meta/stats.json) from its episodes' stats (see the docstring)."""
    by_feature: dict[str, list[dict]] = {}
    for stats in episodes:
        for name, s in stats.items():
            by_feature.setdefault(name, []).append(s)
    out = {}
    for name, items in by_feature.items():
        counts = np.array([float(s["count"][0]) for s in items])
        total = counts.sum()

        def stack(key, items=items):
            return np.stack([np.asarray(s[key], dtype=np.float64) for s in items])

        w = counts.reshape(-1, *[1] * (stack("mean").ndim - 1)) / max(total, 1.0)
        mean = (stack("mean") * w).sum(axis=0)
        var = ((stack("std") ** 2 + (stack("mean") - mean) ** 2) * w).sum(axis=0)
        agg = {
            "min": stack("min").min(axis=0).tolist(),
            "max": stack("max").max(axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(var, 0.0)).tolist(),
            "count": [int(total)],
        }
        for q in QUANTILES:
            if all(q in s for s in items):
                agg[q] = (stack(q) * w).sum(axis=0).tolist()
        out[name] = agg
    return out
