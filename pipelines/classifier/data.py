"""Frames and batches for training the reward classifier (numpy, plus OpenCV to decode).

* `load_frames`: one episode's camera frames at the model's size, with its labels; frames of
  the environment reset are dropped here, so nothing downstream ever sees them.
* `shard_episodes`: episodes dealt to the DDP workers round-robin, episodes with success frames
  and episodes without dealt separately, so that every worker holds both classes when the
  dataset does.
* `balanced_indices`: class-balanced sampling (half the batch success frames, half failure),
  as hil-serl samples its classifier's data; with only one class present, that class.
* augmentation is `pipelines.vision.images.random_shift` (DrQ's), shared with the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.classifier.labels import EpisodeLabels
from pipelines.dataset import DatasetError
from pipelines.vision.images import resize


@dataclass
class Frames:
    """Labeled frames: images N x C x S x S x 3 uint8, labels N uint8, where they come from."""

    images: np.ndarray
    labels: np.ndarray
    episodes: np.ndarray
    frame_index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concat(cls, parts: list[Frames], cameras: int, size: int) -> Frames:
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(
                np.zeros((0, cameras, size, size, 3), np.uint8),
                empty.astype(np.uint8),
                empty,
                empty,
            )
        return cls(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.episodes for p in parts]),
            np.concatenate([p.frame_index for p in parts]),
        )


def load_frames(ds, labels: EpisodeLabels, cameras: list[str], size: int) -> Frames:
    """Decode one episode of a `LeRobotDataset` (every camera) at `size`, reset frames dropped."""
    episode = labels.episode
    n = ds.episode_length(episode)
    y, keep = labels.arrays(n)
    end = int(keep.sum())  # keep is a prefix: everything before the reset
    images = np.empty((end, len(cameras), size, size, 3), dtype=np.uint8)
    for c, key in enumerate(cameras):
        count = 0
        for i, frame in enumerate(ds.iter_camera_frames(episode, key)):
            if i >= end:
                break
            images[i, c] = resize(frame, size)
            count += 1
        if count < end:
            where = ds.relative(ds.video_file(episode, key)) if key in ds.video_keys else key
            raise DatasetError(f"{where}: episode {episode} has {count} frames, its data {n}")
    frame = np.arange(end)
    return Frames(images, y[:end], np.full(end, episode), frame)


def shard_episodes(episodes: list[int], positive: set[int], workers: int) -> list[list[int]]:
    """Episodes per worker: those with success frames and those without, each round-robin."""
    with_success = [e for e in sorted(episodes) if e in positive]
    without = [e for e in sorted(episodes) if e not in positive]
    shards: list[list[int]] = [[] for _ in range(workers)]
    for i, e in enumerate(with_success):
        shards[i % workers].append(e)
    offset = len(with_success)
    for i, e in enumerate(without):
        shards[(offset + i) % workers].append(e)
    return [sorted(s) for s in shards]


def balanced_indices(labels: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """`batch` frame indices, half success frames and half failure (with replacement)."""
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        pool = pos if len(pos) else neg
        return rng.choice(pool, size=batch)
    half = batch // 2 + (rng.random() < 0.5 if batch % 2 else 0)
    return np.concatenate([rng.choice(pos, size=half), rng.choice(neg, size=batch - half)])
