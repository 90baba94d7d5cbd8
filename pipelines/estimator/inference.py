"""Stage 2: the estimator over every frame of a dataset, a Ray Data pass (`flywheel estimate`).

A Ray Data pass in two operators:

1. **frames** (CPU tasks, one per group of episodes): each episode's camera videos are decoded
   with PyAV as a stream (images stored in the parquet files too) and resized to the model's
   input; rows of frames leave the task as they are decoded, so a long video is never held in
   memory.
2. **encoder** (`ActorPoolStrategy`: replicas of the estimator, on GPUs when there are some):
   batches of frames from any episodes through the image encoder, padded to a fixed batch size
   so that a frame's features never depend on what it was batched with (same inputs, same
   outputs). Each frame is encoded once, although kai0 looks at it up to three times (as the
   current frame of its value, as the history and as the look-ahead of relative advantages).

The driver gathers each episode's features as they stream in and, once an episode is complete,
runs the value head on its queries, value (frame 0 -> frame i) and, for kai0, relative
(frame i -> frame f(i) = min(i + 50, last)). The output mirrors the dataset's data files in
`<dataset>/data_<VARIANT>_<step>/`, in the dataset's own layout (v2.1:
`chunk-XXX/episode_XXXXXX.parquet`; v3.0: `chunk-XXX/file-XXX.parquet`, several episodes
each): the original columns plus `absolute_value`, `absolute_advantage` and (kai0)
`relative_advantage`, with the reference's formulas (`pipelines.estimator.data.advantages`),
each file written atomically once all of its episodes are estimated.

A `recap` checkpoint's head takes each episode's task text too, and writes
`absolute_value` = V(s_t) and the N-step `absolute_advantage` (`pipelines.estimator.value`;
`--n-step`, 50 by default), past the episode's end with its return-to-go, which needs its
outcome (`pipelines.estimator.recap`).

The folder's `manifest.json` (`pipelines.estimator.manifest`) says what its files were
computed from; when it is this pass's, files whose output exists are skipped, so an
interrupted pass resumes where it stopped; otherwise every file is computed again. Then
`flywheel label DATASET --data-dir data_KAI0_<step> --advantage-source absolute_advantage`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
import torch

from pipelines.dataset import (
    V30,
    DatasetError,
    LeRobotDataset,
    exclusive_writer,
    read_columns,
    write_parquet,
)
from pipelines.estimator.config import KIND, PROGRESS_VARIANTS, VARIANTS, EstimateConfig
from pipelines.estimator.data import HORIZON, advantages, check_dataset, lookahead
from pipelines.estimator.manifest import estimate_manifest, manifest_matches, prepare_output
from pipelines.estimator.model import load_checkpoint
from pipelines.estimator.recap import estimation_setup
from pipelines.runtime.checkpoints import checkpoint_kind, latest_checkpoint, read_meta
from pipelines.runtime.cluster import check_job_output, cluster_cpus, connect, require
from pipelines.vision.images import resize


def output_dir(variant: str, step: int) -> str:
    return f"data_{variant.upper()}_{step}"


# --------------------------------------------------------------------------- operator 1


def episode_frames(
    ds: LeRobotDataset,
    episode: int,
    cameras: list[str],
    size: int,
    data_dir: str = "data",
    rows: int = 32,
):
    """Yield an episode's frames at the model's input size, `rows` at a time."""
    streams = [iter(ds.iter_camera_frames(episode, k, data_dir)) for k in cameras]
    n = ds.episode_length(episode)
    for a in range(0, n, rows):
        count = min(rows, n - a)
        images = np.empty((count, len(cameras), size, size, 3), np.uint8)
        for i in range(count):
            for c, stream in enumerate(streams):
                images[i, c] = resize(next(stream), size)
        yield {
            "episode": np.full(count, episode, np.int64),
            "frame": np.arange(a, a + count, dtype=np.int64),
            "images": images,
        }


def decode_frames(batch: dict, root: str, cameras: list[str], size: int, data_dir: str):
    """Ray Data UDF (a generator): the frames of the batch's episodes."""
    ds = LeRobotDataset(root)
    for episode in batch["episode"]:
        yield from episode_frames(ds, int(episode), cameras, size, data_dir)


# --------------------------------------------------------------------------- operator 2


class Encoder:
    """A model replica (Ray Data actor): frames in, image features out."""

    def __init__(self, checkpoint: str, batch_size: int, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, _, _ = load_checkpoint(checkpoint)
        self.model = model.to(self.device)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        return {
            "episode": batch["episode"],
            "frame": batch["frame"],
            "features": encode_frames(self.model, batch["images"], self.batch_size, self.device),
        }


def encode_frames(model, images: np.ndarray, batch_size: int, device="cpu") -> np.ndarray:
    """Encoder features of frames (N x C x S x S x 3), in fixed-size padded batches."""
    n = len(images)
    out = None
    with torch.no_grad():
        for a in range(0, n, batch_size):
            chunk = images[a : a + batch_size]
            pad = batch_size - len(chunk)
            if pad:  # fixed shapes: a result never depends on its batch neighbours
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            y = model.encode(torch.from_numpy(chunk).to(device)).float().cpu().numpy()
            if out is None:
                out = np.empty((n, y.shape[1]), np.float32)
            out[a : a + batch_size] = y[: batch_size - pad]
    return out if out is not None else np.zeros((0, 0), np.float32)


def episode_outputs(model, features: np.ndarray, state: np.ndarray, kai0: bool):
    """(values, relative or None) of one episode from its frames' features (the head only)."""
    n = len(features)
    f = lookahead(n)
    feats, st = torch.from_numpy(features), torch.from_numpy(state.astype(np.float32))
    with torch.no_grad():
        if kai0:
            zeros = np.zeros(n, np.int64)
            values = model.value(
                torch.stack([feats[zeros], feats], 1), torch.stack([st[zeros], st], 1)
            )
            relative = model.value(torch.stack([feats, feats[f]], 1), torch.stack([st, st[f]], 1))
            return values.numpy(), relative.numpy()
        return model.value(feats[:, None], st[:, None]).numpy(), None


# --------------------------------------------------------------------------- the driver


def progress_columns(model, episode: int, features: np.ndarray, state: np.ndarray):
    """kai0/pi06: the columns of one episode (`advantages` of its raw outputs)."""
    kai0 = model.config.variant == "kai0"
    return advantages(*episode_outputs(model, features, state, kai0))


COLUMNS = ("relative_advantage", "absolute_value", "absolute_advantage")


def write_output_file(
    ds: LeRobotDataset, source: Path, target: Path, columns_of, features: dict[int, np.ndarray]
) -> None:
    """A data file's original columns + the estimator's columns, written atomically.

    `features` holds the encoded frames of every episode in the file (one for v2.1, several
    for v3.0); each episode's columns, `columns_of(episode, features, state)`, come from its
    own frames only.
    """
    table = read_columns(source)
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    if "episode_index" in table.column_names:
        where = table.column("episode_index").to_numpy()
    else:  # a v2.1 file without the column holds one episode
        where = np.full(table.num_rows, next(iter(features)))
    out: dict[str, np.ndarray] = {}
    for episode, feats in features.items():
        rows = np.flatnonzero(where == episode)  # frames in order within the file
        for name, col in columns_of(episode, feats, state[rows]).items():
            out.setdefault(name, np.zeros(table.num_rows, np.float32))[rows] = col
    for name in COLUMNS:
        if name not in out:
            continue
        if name in table.column_names:
            table = table.drop([name])
        table = table.append_column(name, pa.array(out[name], pa.float32()))
    write_parquet(target, table)


@dataclass
class EstimateResult:
    out_dir: Path
    episodes: int
    skipped: int
    frames: int
    seconds: float


def run(cfg: EstimateConfig, episodes: list[int] | None = None) -> EstimateResult:
    """Estimate `episodes` (default: all) of `cfg.dataset`; the output folder and counts."""
    t0 = time.time()
    for name, value, low in (
        ("--batch-size", cfg.batch_size, 1),
        ("--replicas", 1 if cfg.replicas is None else cfg.replicas, 1),
        ("--gpus-per-replica", cfg.gpus_per_replica or 0, 0),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if cfg.n_step < 1:
        raise DatasetError(f"--n-step {cfg.n_step}: at least 1")
    check_job_output(cfg.dataset, "dataset (written into)")
    ckpt = Path(cfg.checkpoint)
    if ckpt.is_dir() and checkpoint_kind(ckpt) is None:  # a run folder: its latest checkpoint
        ckpt = latest_checkpoint(ckpt, KIND) or ckpt
    meta = read_meta(ckpt, KIND)
    model = meta["model"]
    variant = meta.get("variant")
    if variant not in VARIANTS or model.get("variant") != variant:
        raise DatasetError(f"{ckpt}: an estimator of an unknown variant {variant!r}")
    if variant == "recap" and not isinstance(meta.get("recap"), dict):
        raise DatasetError(f"{ckpt}: a recap checkpoint without its recap section")
    if variant in PROGRESS_VARIANTS:  # RECAP's options mean nothing to a progress estimator
        given = [
            f"--{name} {value}"
            for name, value, default in (
                ("n-step", cfg.n_step, EstimateConfig.n_step),
                ("default-outcome", cfg.default_outcome, None),
            )
            if value != default
        ]
        if given:
            raise DatasetError(
                f"{' and '.join(given)}: for recap checkpoints only; {ckpt} is a {variant} "
                f"progress estimator (its advantage looks {HORIZON} frames ahead)"
            )
    ds = LeRobotDataset(cfg.dataset)
    episodes = episodes if episodes is not None else ds.episode_indices
    cameras = check_dataset(ds, episodes, ("observation.state",), cfg.data_dir)
    if sorted(cameras) != sorted(model["cameras"]):
        raise DatasetError(
            f"{ds.root}/meta/info.json: cameras {cameras}, the checkpoint was trained on "
            f"{model['cameras']}"
        )
    state_dim = (ds.features["observation.state"].get("shape") or [None])[0]
    if state_dim != model["state_dim"]:
        raise DatasetError(
            f"{ds.root}/meta/info.json: observation.state has shape [{state_dim}], the "
            f"checkpoint was trained on [{model['state_dim']}]"
        )
    out_dir = output_dir(meta["variant"], meta["step"])
    # One writer at a time: holding the dataset's lock also finishes a killed writer's commit
    # and removes stale temporaries (a killed estimate's among them), never another's.
    with exclusive_writer(ds.root, "flywheel estimate"):
        return _estimate(cfg, ds, ckpt, meta, episodes, out_dir, t0)


def _estimate(cfg, ds, ckpt, meta, episodes, out_dir, t0) -> EstimateResult:
    """`run`'s pass, holding the dataset's writer lock."""
    model = meta["model"]
    # The output mirrors the input files (v3.0: multi-episode files), each written once all of
    # its episodes are estimated; a file whose output exists is done (resume).
    by_file: dict[Path, list[int]] = {}
    for e in ds.episode_indices if ds.version == V30 else episodes:
        by_file.setdefault(ds.data_file(e, cfg.data_dir), []).append(e)
    if ds.version == V30:  # whole files: every episode of a file the request touches
        wanted = {ds.data_file(e, cfg.data_dir) for e in episodes}
        by_file = {f: eps for f, eps in by_file.items() if f in wanted}
        episodes = [e for eps in by_file.values() for e in eps]
    recap = None
    if model["variant"] == "recap":  # every episode's outcome, before anything is written
        recap = estimation_setup(
            ds, meta["recap"], model["prompt_vocab"], episodes, cfg.n_step, cfg.default_outcome
        )
    manifest = estimate_manifest(
        ds, ckpt, meta, cfg.data_dir, recap.manifest if recap is not None else None
    )
    reuse = manifest_matches(ds, out_dir, manifest)  # else every file is computed again
    target = {f: ds.data_file(eps[0], out_dir) for f, eps in by_file.items()}
    pending = {f: set(eps) for f, eps in by_file.items() if not (reuse and target[f].exists())}
    todo = sorted(e for eps in pending.values() for e in eps)
    file_of = {e: f for f, eps in pending.items() for e in eps}
    lengths = {e: ds.episode_length(e) for e in todo}
    result = EstimateResult(
        ds.root / out_dir, len(todo), len(episodes) - len(todo), sum(lengths.values()), 0.0
    )
    if not todo:
        result.seconds = time.time() - t0
        return result

    connect(cfg.ray_address, data=True)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    per_gpu = cfg.gpus_per_replica if cfg.gpus_per_replica is not None else (1 if gpus else 0)
    cpus = cluster_cpus()
    replicas = cfg.replicas or (max(1, int(gpus / per_gpu)) if per_gpu else cpus)
    if per_gpu:
        require(
            "GPU", replicas * per_gpu, f"--replicas {replicas} x --gpus-per-replica {per_gpu:g}"
        )
    head, _, _ = load_checkpoint(ckpt)  # the driver runs the (small) value head
    prepare_output(ds, out_dir, manifest)  # the first write: a stale folder's files go

    def columns_of(episode: int, features: np.ndarray, state: np.ndarray):
        if recap is not None:
            return recap.columns(head, episode, features, state)
        return progress_columns(head, episode, features, state)

    source = ray.data.from_items(
        [{"episode": e} for e in todo], override_num_blocks=min(len(todo), 4 * cpus)
    )
    # CPU-only, the replicas (one torch thread each) get most of the CPU tokens and the decoding
    # tasks the rest: the encoder is the heavy part. Distinct resource requests also keep Ray
    # Data from fusing the two operators (which would decode inside the model's actors).
    decode_cpus = 1.0 if per_gpu else min(0.5, cpus / (4 * replicas))
    frames = source.map_batches(
        decode_frames,
        batch_size=1,
        num_cpus=decode_cpus,
        fn_kwargs={
            "root": str(ds.root),
            "cameras": model["cameras"],
            "size": model["image_size"],
            "data_dir": cfg.data_dir,
        },
    )
    resources = (
        {"num_gpus": per_gpu}
        if per_gpu
        else {"num_cpus": max(0.1, (cpus - decode_cpus) / replicas)}
    )
    features = frames.map_batches(
        Encoder,
        fn_constructor_kwargs={
            "checkpoint": str(ckpt),
            "batch_size": cfg.batch_size,
            "threads": None if per_gpu else 1,
        },
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=replicas),
        **resources,
    )
    got: dict[int, np.ndarray] = {}
    counts = dict.fromkeys(todo, 0)
    finished: dict[Path, dict[int, np.ndarray]] = {}
    written = 0
    for batch in features.iter_batches(batch_format="numpy", batch_size=None):
        for e in np.unique(batch["episode"]).tolist():
            sel = batch["episode"] == e
            feats = batch["features"][sel]
            store = got.setdefault(e, np.empty((lengths[e], feats.shape[1]), np.float32))
            store[batch["frame"][sel]] = feats
            counts[e] += int(sel.sum())
            if counts[e] == lengths[e]:
                f = file_of[e]
                finished.setdefault(f, {})[e] = got.pop(e)
                if len(finished[f]) == len(pending[f]):
                    write_output_file(ds, f, target[f], columns_of, finished.pop(f))
                written += 1
    if written != len(todo):
        raise DatasetError(f"{ds.root / out_dir}: {len(todo) - written} episode(s) incomplete")
    result.seconds = time.time() - t0
    return result
