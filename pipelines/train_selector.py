"""`flywheel train-selector DATASET`: the learned selector, P(approve | state, candidate).

Trains `pipelines.selection.model.ApprovalModel` on the critical attempts of a dataset from
`flywheel collect`: each frame whose `approval_status` is approved (label 1) or rejected
(label 0), with the frame's images and state and the executed candidate (`action`). Plain
frames (`none`) were never judged and are not used. The driver reads every episode's columns
(no pixels) to check them and compute the normalization statistics, so every worker
normalizes alike; then Ray Train (DDP, `pipelines.runtime.training.fit`) runs the workers, each on
its
own shard of the training episodes, decoding only their critical frames. Class balance:
each batch draws approved and rejected attempts half and half, so the logit is not dominated
by the admin's base rate. Checkpoints of kind "selector" (resumable as every Flywheel run);
held-out episodes give the accuracy and the mean log-loss at the end.

The checkpoint is the `learned` selector's scorer: `flywheel collect --selector learned
--scorer <checkpoint>` (`ApprovalScorer`, softmax of the approval logits over the candidates).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, read_columns
from pipelines.runtime.cli import JobParser, run_job
from pipelines.runtime.training import (
    check_resume,
    fit,
    learning_rate,
    read_meta,
    resume_in_worker,
    write_checkpoint,
)
from pipelines.selection.model import KIND, ApprovalConfig, normalization_stats

COLUMNS = ["observation.state", "action", "approval_status", "episode_index", "frame_index"]


@dataclass
class TrainSelectorConfig:
    dataset: str
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    image_size: int = 32
    encoder: str = "small_convnet"
    cameras: str | None = None  # comma-separated; default: every camera
    holdout: float = 0.2
    seed: int = 0
    workers: int = 1
    cpus_per_worker: int | None = None
    checkpoint_every: int = 500
    name: str = "selector"
    storage: str = "flywheel-runs"
    max_failures: int = 2
    ray_address: str | None = None


def critical_rows(table) -> np.ndarray:
    status = np.asarray(table.column("approval_status").to_pylist(), dtype=object)
    return np.flatnonzero((status == "approved") | (status == "rejected"))


def scan(cfg: TrainSelectorConfig) -> tuple[LeRobotDataset, dict, list[int], list[int], list]:
    """Checks and statistics (no pixels): (dataset, meta, training, held-out, cameras)."""
    from pipelines.runtime.training import split_episodes
    from pipelines.vision.encoders import ENCODERS

    for name, value, low in (
        ("--steps", cfg.steps, 1),
        ("--batch-size", cfg.batch_size, 2),
        ("--workers", cfg.workers, 1),
        ("--checkpoint-every", cfg.checkpoint_every, 1),
        ("--image-size", cfg.image_size, 16),
    ):
        if value < low:
            raise DatasetError(f"{name} {value}: at least {low}")
    if not cfg.lr > 0:
        raise DatasetError(f"--lr {cfg.lr}: must be > 0")
    if not 0 <= cfg.holdout < 1:
        raise DatasetError(f"--holdout {cfg.holdout}: a share in [0, 1)")
    if cfg.encoder not in ENCODERS:
        raise DatasetError(f"--encoder {cfg.encoder!r}: one of {', '.join(sorted(ENCODERS))}")
    ds = LeRobotDataset(cfg.dataset)
    cameras = ds.camera_keys
    if cfg.cameras:
        wanted = [c.strip() for c in cfg.cameras.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in cameras]
        if unknown:
            raise DatasetError(f"--cameras: {unknown[0]!r} is not a camera of {ds.root}")
        cameras = wanted
    if not cameras:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")
    states, actions, labels = [], [], []
    for e in ds.episode_indices:
        path = ds.data_file(e)
        table = read_columns(path, COLUMNS)
        rows = critical_rows(table)
        from pipelines.policy.data import vectors

        state, action = vectors(table, "observation.state"), vectors(table, "action")
        status = table.column("approval_status").to_pylist()
        states.append(state[rows])
        actions.append(action[rows])
        labels += [status[i] == "approved" for i in rows]
    labels = np.array(labels, dtype=bool)
    if not len(labels):
        raise DatasetError(
            f"{ds.root}: no critical attempts (approval_status approved/rejected); collect "
            "with flywheel collect"
        )
    if labels.all() or not labels.any():
        which = "approved" if labels.all() else "rejected"
        raise DatasetError(f"{ds.root}: every critical attempt was {which}; nothing to learn")
    train, held = split_episodes(ds.episode_indices, cfg.holdout, cfg.seed)
    model = ApprovalConfig(
        cameras=cameras,
        state_dim=states[0].shape[1],
        action_dim=actions[0].shape[1],
        image_size=cfg.image_size,
        encoder=cfg.encoder,
    )
    meta = {
        "kind": KIND,
        "model": model.to_dict(),
        "recipe": {"batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed},
        "normalization": normalization_stats(np.concatenate(states), np.concatenate(actions)),
        "dataset": str(ds.root.resolve()),
        "attempts": int(len(labels)),
        "approved_share": float(labels.mean()),
    }
    return ds, meta, train, held, cameras


def load_attempts(ds: LeRobotDataset, episodes: list[int], cameras: list[str], size: int):
    """The critical attempts of `episodes`: images, states, candidates, labels."""
    from pipelines.policy.data import vectors
    from pipelines.vision.images import resize

    images, states, actions, labels = [], [], [], []
    for e in episodes:
        table = ds.read_episode(e, COLUMNS)
        rows = critical_rows(table)
        if not len(rows):
            continue
        wanted = set(rows.tolist())
        per_camera = []
        for key in cameras:
            frames = [
                resize(f, size) for i, f in enumerate(ds.iter_camera_frames(e, key)) if i in wanted
            ]
            per_camera.append(np.stack(frames))
        images.append(np.stack(per_camera, axis=1))
        states.append(vectors(table, "observation.state")[rows])
        actions.append(vectors(table, "action")[rows])
        status = table.column("approval_status").to_pylist()
        labels.append(np.array([status[i] == "approved" for i in rows], dtype=np.float32))
    if not images:
        n = len(cameras)
        return (np.zeros((0, n, size, size, 3), np.uint8), np.zeros((0, 6), np.float32),
                np.zeros((0, 6), np.float32), np.zeros(0, np.float32))  # fmt: skip
    return (np.concatenate(images), np.concatenate(states), np.concatenate(actions),
            np.concatenate(labels))  # fmt: skip


def balanced_batch(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices: half approved, half rejected (with replacement); uniform if one class lacks."""
    pos, neg = np.flatnonzero(labels > 0.5), np.flatnonzero(labels <= 0.5)
    if not len(pos) or not len(neg):
        return rng.integers(0, len(labels), size=size)
    half = size // 2
    return np.concatenate([rng.choice(pos, half), rng.choice(neg, size - half)])


def evaluate(model, images, states, actions, labels) -> dict:
    import torch

    if not len(labels):
        return {}
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images), torch.from_numpy(states),
                       torch.from_numpy(actions)).numpy()  # fmt: skip
    model.train()
    p = 1 / (1 + np.exp(-logits))
    eps = 1e-6
    logloss = -np.mean(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps))
    return {"heldout_accuracy": float(((p > 0.5) == (labels > 0.5)).mean()),
            "heldout_logloss": float(logloss), "heldout_attempts": int(len(labels))}  # fmt: skip


def train_loop(config: dict) -> None:
    """Ray Train worker (module docstring)."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import prepare_model

    from pipelines.selection.model import ApprovalModel

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    ds = LeRobotDataset(config["dataset"])
    mcfg = ApprovalConfig(**config["model"])
    shard = config["train_episodes"][rank::world]
    images, states, actions, labels = load_attempts(ds, shard, mcfg.cameras, mcfg.image_size)
    if not len(labels):
        raise DatasetError(f"{ds.root}: worker {rank}'s episodes {shard} hold no critical attempt")
    plain = ApprovalModel(mcfg)
    plain.set_normalization(config["stats"])
    model = prepare_model(plain)
    plain = model.module if hasattr(model, "module") else model
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    start = 0
    _, state = resume_in_worker()
    if state:
        plain.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    steps = config["steps"]
    rng = np.random.default_rng([config["seed"], rank, start])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for step in range(start, steps):
        idx = balanced_batch(labels, config["batch_size"], rng)
        logits = model(torch.from_numpy(images[idx]), torch.from_numpy(states[idx]),
                       torch.from_numpy(actions[idx]))  # fmt: skip
        loss = loss_fn(logits, torch.from_numpy(labels[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, config["lr"])
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % config["checkpoint_every"] and done != steps:
            continue
        metrics = {"step": done, "loss": float(np.mean(losses)), "resumed_from": start}
        losses = []
        if rank == 0 and done == steps and config["held_episodes"]:
            held = load_attempts(ds, config["held_episodes"], mcfg.cameras, mcfg.image_size)
            metrics.update(evaluate(plain, *held))
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                state = {"model": plain.state_dict(), "optimizer": opt.state_dict(), "step": done}
                write_checkpoint(d, KIND, state, {**config["meta"], "step": done,
                                                  "metrics": metrics})  # fmt: skip
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)


@dataclass
class TrainSelectorResult:
    checkpoint: str
    step: int
    metrics: dict
    seconds: float


def run(cfg: TrainSelectorConfig) -> TrainSelectorResult:
    t0 = time.time()
    ds, meta, train, held, cameras = scan(cfg)
    run_dir = Path(cfg.storage) / cfg.name
    check_resume(run_dir, KIND, meta["model"], cfg.name)
    previous = check_resume(run_dir, KIND, meta["recipe"], cfg.name, key="recipe")
    if previous is not None and previous["step"] >= cfg.steps:
        return TrainSelectorResult(previous["path"], previous["step"], previous["metrics"],
                                   time.time() - t0)  # fmt: skip
    from pipelines.runtime.cluster import cluster_cpus, connect

    connect(cfg.ray_address)
    cpus = cfg.cpus_per_worker or max(1, cluster_cpus() // cfg.workers)
    loop_config = {
        "dataset": meta["dataset"],
        "model": meta["model"],
        "stats": meta["normalization"],
        "train_episodes": train,
        "held_episodes": held,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "threads": cpus,
        "checkpoint_every": cfg.checkpoint_every,
        "meta": {**meta, "train_episodes": train, "held_episodes": held},
    }
    result = fit(train_loop, loop_config, workers=cfg.workers, cpus_per_worker=cpus,
                 gpus_per_worker=0.0, name=cfg.name, storage=cfg.storage,
                 max_failures=cfg.max_failures)  # fmt: skip
    if result.checkpoint is None:
        raise DatasetError(f"{cfg.storage}/{cfg.name}: training ended without a checkpoint")
    final = read_meta(result.checkpoint.path, KIND)
    return TrainSelectorResult(result.checkpoint.path, final["step"], final["metrics"],
                               time.time() - t0)  # fmt: skip


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = JobParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    d = TrainSelectorConfig("")
    for flag, typ in (("--steps", int), ("--batch-size", int), ("--lr", float),
                      ("--image-size", int), ("--holdout", float), ("--seed", int),
                      ("--workers", int), ("--cpus-per-worker", int),
                      ("--checkpoint-every", int), ("--max-failures", int)):  # fmt: skip
        p.add_argument(flag, type=typ, default=getattr(d, flag[2:].replace("-", "_")))
    p.add_argument("--encoder", default=d.encoder, help="an encoder of pipelines.vision.encoders")
    p.add_argument("--cameras", default=None, help="comma-separated cameras (default: all)")
    p.add_argument("--name", default=d.name, help="run name (default selector)")
    p.add_argument("--storage", default=d.storage)
    p.add_argument("--ray-address", default=None)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "flywheel train-selector") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = TrainSelectorConfig(**vars(args))
    result = run_job(run, cfg, prog)
    if result is None:
        return 2
    m = result.metrics
    extra = (
        f", held-out accuracy {m['heldout_accuracy']:.3f} on {m['heldout_attempts']} attempts"
        if "heldout_accuracy" in m
        else ""
    )
    print(f"Trained {cfg.name} to step {result.step}: loss {m.get('loss', float('nan')):.4f}"
          f"{extra}")  # fmt: skip
    print(f"Checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.cluster import exit_process

    exit_process(main(prog="python -m pipelines.train_selector"))
