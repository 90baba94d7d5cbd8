"""Frames for the advantage estimator: decoding, the training pairs, the inference queries.

Pure numpy (plus the dataset layer's decoding, and OpenCV to resize); training
(`pipelines.estimator.training`) and estimation (`pipelines.estimator.inference`) call these,
after `check_dataset` has checked what they will read.

Training pairs, as the stage-advantage reference samples them: a current frame c drawn at
random, a history frame h drawn uniformly from the *other* frames of the same episode (a
one-frame episode pairs its frame with itself, target 0: the reference loops forever there),
target clamp(spg[c] - spg[h], -1, 1). The `pi06` variant sees the current frame only; its
target is spg[c] (the history "at progress 0").

Inference (per episode of n frames, frame i, horizon H = 50): f = min(i + H, n - 1);
absolute_value[i] = model(history = frame 0, current = frame i), 0 at i = 0;
relative[i] = model(history = frame i, current = frame f) (kai0 only);
absolute_advantage[i] = V(f) - V(i); both advantages are scaled by H / (f - i) when
f - i != H, are 0 when f = i, and are clipped to [-1, 1].

The `recap` variant samples current frames alike; its target is the frame's value target
(`pipelines.recap.targets`, from the episode's outcome) as a two-hot distribution over the
value's bins, and it also takes the episode's task text (`value_batch`) and the state's
normalization (`state_normalization`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, parquet_column_names
from pipelines.dataset.metadata import read_json
from pipelines.estimator.value import two_hot
from pipelines.vision.images import resize
from pipelines.vision.prompts import tokenize

HORIZON = 50


@dataclass
class EpisodeFrames:
    """One episode at the model's input size: images n x cameras x S x S x 3 uint8."""

    episode: int
    images: np.ndarray
    state: np.ndarray  # n x state_dim float32
    progress: np.ndarray | None  # n float32: stage_progress_gt (kai0, pi06)
    value_target: np.ndarray | None = None  # n float32: the RECAP value target (recap)
    task: str = ""  # the episode's task text (recap)

    def __len__(self) -> int:
        return len(self.state)


def load_episode(
    ds, episode: int, cameras: list[str], size: int, value_target=None, task: str = ""
) -> EpisodeFrames:
    """Decode one episode of a `LeRobotDataset` (every camera) at the model's input size;
    with its `value_target` (recap) it reads no stage_progress_gt."""
    columns = ["observation.state"] + ([] if value_target is not None else ["stage_progress_gt"])
    table = ds.read_episode(episode, columns)
    state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
    n = len(state)
    images = np.empty((n, len(cameras), size, size, 3), dtype=np.uint8)
    for c, key in enumerate(cameras):
        for i, frame in enumerate(ds.iter_camera_frames(episode, key)):
            images[i, c] = resize(frame, size)
    if value_target is not None:
        target = np.asarray(value_target, np.float32)
        if len(target) != n:
            raise DatasetError(
                f"{ds.relative(ds.data_file(episode))}: episode {episode} has {n} frames, its "
                f"metadata says {len(target)}"
            )
        return EpisodeFrames(episode, images, state.astype(np.float32), None, target, task)
    progress = table["stage_progress_gt"].to_numpy(zero_copy_only=False).astype(np.float32)
    return EpisodeFrames(episode, images, state.astype(np.float32), progress)


def sample_pairs(
    lengths: np.ndarray, batch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode position, current frame, history frame) for `batch` random pairs.

    Episodes are drawn in proportion to their length (every frame equally likely to be the
    current one); the history is uniform over the episode's other frames.
    """
    lengths = np.asarray(lengths)
    ep = rng.choice(len(lengths), size=batch, p=lengths / lengths.sum())
    n = lengths[ep]
    cur = (rng.random(batch) * n).astype(np.int64)
    other = (rng.random(batch) * np.maximum(n - 1, 1)).astype(np.int64)
    hist = np.where(n > 1, other + (other >= cur), cur)
    return ep, cur, hist


def training_batch(
    episodes: list[EpisodeFrames], batch: int, rng: np.random.Generator, variant: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images B x T x C x S x S x 3, state B x T x D, target B) for the given variant."""
    ep, cur, hist = sample_pairs(np.array([len(e) for e in episodes]), batch, rng)
    if variant == "pi06":
        images = np.stack([episodes[e].images[c][None] for e, c in zip(ep, cur, strict=True)])
        state = np.stack([episodes[e].state[c][None] for e, c in zip(ep, cur, strict=True)])
        target = np.array([episodes[e].progress[c] for e, c in zip(ep, cur, strict=True)])
    else:
        pairs = list(zip(ep, cur, hist, strict=True))
        images = np.stack([episodes[e].images[[h, c]] for e, c, h in pairs])
        state = np.stack([episodes[e].state[[h, c]] for e, c, h in pairs])
        target = np.array([episodes[e].progress[c] - episodes[e].progress[h] for e, c, h in pairs])
    return images, state, np.clip(target, -1.0, 1.0).astype(np.float32)


def value_batch(
    episodes: list[EpisodeFrames], batch: int, rng: np.random.Generator, vocab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """recap: (images B x 1 x C x S x S x 3, state B x 1 x D, task word ids B x L, two-hot
    targets B x bins, targets B) of `batch` current frames drawn as `sample_pairs` draws them."""
    ep, cur, _ = sample_pairs(np.array([len(e) for e in episodes]), batch, rng)
    images = np.stack([episodes[e].images[c][None] for e, c in zip(ep, cur, strict=True)])
    state = np.stack([episodes[e].state[c][None] for e, c in zip(ep, cur, strict=True)])
    target = np.array(
        [episodes[e].value_target[c] for e, c in zip(ep, cur, strict=True)], np.float32
    )
    tokens = tokenize([episodes[e].task for e in ep], vocab)
    return images, state, tokens, two_hot(target), target


STD_FLOOR = 1e-2  # in the dataset's units: a constant dimension must not divide by ~0


def state_normalization(ds: LeRobotDataset, episodes: list[int]) -> dict:
    """{"mean", "std", "source"} of `observation.state`: meta/stats.json's mean and std when
    it has them (LeRobot writes them), else computed over `episodes`; std at least
    `STD_FLOOR`."""
    dim = int(ds.features["observation.state"]["shape"][0])
    path = ds.meta_dir / "stats.json"
    if path.exists():
        entry = read_json(path)
        entry = entry.get("observation.state") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and "mean" in entry and "std" in entry:
            try:
                mean = np.asarray(entry["mean"], np.float64).reshape(-1)
                std = np.asarray(entry["std"], np.float64).reshape(-1)
            except (TypeError, ValueError):
                mean = std = np.zeros(0)
            if mean.shape != (dim,) or std.shape != (dim,) or not np.isfinite([*mean, *std]).all():
                raise DatasetError(
                    f"{path}: observation.state's mean and std must be {dim} finite numbers each"
                )
            return _normalization(mean, std, "meta/stats.json")
    states = [
        np.stack(
            ds.read_episode(e, ["observation.state"])["observation.state"].to_numpy(
                zero_copy_only=False
            )
        )
        for e in episodes
    ]
    state = np.concatenate(states).astype(np.float64)
    return _normalization(state.mean(0), state.std(0), "training episodes")


def _normalization(mean: np.ndarray, std: np.ndarray, source: str) -> dict:
    return {"mean": mean.tolist(), "std": np.maximum(std, STD_FLOOR).tolist(), "source": source}


def lookahead(n: int, horizon: int = HORIZON) -> np.ndarray:
    """f(i) = min(i + horizon, n - 1) for every frame i of an n-frame episode."""
    return np.minimum(np.arange(n) + horizon, n - 1)


def advantages(
    values: np.ndarray, relative: np.ndarray | None, horizon: int = HORIZON
) -> dict[str, np.ndarray]:
    """The estimator's per-frame columns from its raw outputs for one episode.

    `values[i]` = model(frame 0, frame i) (its value at 0 is replaced by 0);
    `relative[i]` = model(frame i, frame f(i)) or None (pi06).
    """
    n = len(values)
    v = np.asarray(values, dtype=np.float64).copy()
    if n:
        v[0] = 0.0
    f = lookahead(n, horizon)
    gap = (f - np.arange(n)).astype(np.float64)
    scale = np.where(gap == 0, 0.0, horizon / np.where(gap == 0, 1.0, gap))

    def finish(raw: np.ndarray) -> np.ndarray:
        return np.clip(raw * scale, -1.0, 1.0).astype(np.float32)

    out = {"absolute_value": v.astype(np.float32), "absolute_advantage": finish(v[f] - v)}
    if relative is not None:
        out["relative_advantage"] = finish(np.asarray(relative, dtype=np.float64))
    return out


def check_dataset(
    ds: LeRobotDataset,
    episodes: list[int],
    columns: tuple[str, ...] = ("observation.state", "stage_progress_gt"),
    data_dir: str = "data",
) -> list[str]:
    """The cameras to use; a DatasetError for what the estimator cannot work with.

    Training kai0/pi06 needs `stage_progress_gt`; recap training and estimation (new data)
    only `observation.state`.
    """
    cameras = ds.camera_keys
    if not cameras:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")
    if not episodes:
        raise DatasetError(f"{ds.root}: no episodes")
    if "observation.state" not in ds.features:
        raise DatasetError(f"{ds.root}/meta/info.json: no 'observation.state' feature")
    # every file readable, with the columns (footers only: fast; v3.0 files hold many episodes)
    files: dict = {}
    for e in episodes:
        files.setdefault(ds.data_file(e, data_dir), e)
    for path, e in files.items():
        if not path.exists():
            raise DatasetError(f"{ds.relative(path)}: missing (episode {e})")
        names = parquet_column_names(path)
        for col in columns:
            if col not in names:
                raise DatasetError(f"{ds.relative(path)}: missing column {col!r}")
    for key in cameras:  # fail fast on a video this machine cannot decode
        next(iter(ds.iter_camera_frames(episodes[0], key, data_dir)))
    return cameras
