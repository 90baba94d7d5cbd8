"""Training the learned selector's scorer, P(approve | state, candidate); `flywheel train-selector`.

Trains `pipelines.selection.model.ApprovalModel` on the critical attempts of a dataset from
`flywheel collect`: each frame whose `approval_status` is approved (label 1) or rejected
(label 0), with the frame's images and state and the executed candidate (`action`). Plain
frames (`none`) were never judged and are not used. The driver reads every episode's columns
(no pixels) to check them and compute the normalization statistics, so every worker
normalizes alike; then Ray Train (DDP, `pipelines.runtime.training`) runs the workers, each on
its own shard of the training episodes, decoding only their critical frames. Class balance:
each batch draws approved and rejected attempts half and half, so the logit is not dominated
by the admin's base rate. Checkpoints of kind "selector" (resumable as every Flywheel run);
MLflow from rank 0;
held-out episodes give the accuracy and the mean log-loss at the end.

The checkpoint is the `learned` selector's scorer: `flywheel collect --selector learned
--scorer <checkpoint>` (`ApprovalScorer`, softmax of the approval logits over the candidates).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.dataset import DatasetError, LeRobotDataset, read_columns
from pipelines.policy.data import vectors
from pipelines.runtime.run_config import check_run
from pipelines.runtime.schedule import split_episodes
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import Trainer, TrainingResult, run_training
from pipelines.selection.config import KIND, SelectorTrainConfig
from pipelines.selection.model import ApprovalConfig, ApprovalModel, normalization_stats
from pipelines.vision.encoders import ENCODERS
from pipelines.vision.images import resize

COLUMNS = ["observation.state", "action", "approval_status", "episode_index", "frame_index"]


def critical_rows(table) -> np.ndarray:
    status = np.asarray(table.column("approval_status").to_pylist(), dtype=object)
    return np.flatnonzero((status == "approved") | (status == "rejected"))


def scan(cfg: SelectorTrainConfig) -> tuple[LeRobotDataset, dict, list[int], list[int], list]:
    """Checks and statistics (no pixels): (dataset, meta, training, held-out, cameras)."""
    check_run(cfg.run, min_batch=2)
    if cfg.image_size < 16:
        raise DatasetError(f"--image-size {cfg.image_size}: at least 16")
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
    train, held = split_episodes(ds.episode_indices, cfg.run.holdout, cfg.run.seed)
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
        "recipe": {"batch_size": cfg.run.batch_size, "lr": cfg.run.lr, "seed": cfg.run.seed},
        "normalization": normalization_stats(np.concatenate(states), np.concatenate(actions)),
        "dataset": str(ds.root.resolve()),
        "attempts": int(len(labels)),
        "approved_share": float(labels.mean()),
        "train_episodes": train,
        "held_episodes": held,
    }
    return ds, meta, train, held, cameras


def load_attempts(ds: LeRobotDataset, episodes: list[int], cameras: list[str], size: int):
    """The critical attempts of `episodes`: images, states, candidates, labels."""
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


def approval_metrics(model, images, states, actions, labels, device="cpu") -> dict:
    """Held-out accuracy and mean log-loss of the approval model on critical attempts."""
    if not len(labels):
        return {}
    model.eval()
    with torch.no_grad():
        inputs = (torch.from_numpy(a).to(device) for a in (images, states, actions))
        logits = model(*inputs).cpu().numpy()
    model.train()
    p = 1 / (1 + np.exp(-logits))
    eps = 1e-6
    logloss = -np.mean(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps))
    return {
        "heldout_accuracy": float(((p > 0.5) == (labels > 0.5)).mean()),
        "heldout_logloss": float(logloss),
        "heldout_attempts": int(len(labels)),
    }


@dataclass
class SelectorJob:
    """What the driver hands every worker besides the config."""

    dataset: str  # resolved path
    model: ApprovalConfig
    train_episodes: list[int]
    held_episodes: list[int]
    meta: dict  # the checkpoint's config, less step and metrics


class SelectorTrainer(Trainer):
    """The selector's part of the shared Ray Train loop (module docstring)."""

    kind = KIND
    experiment = "flywheel-train-selector"

    def load_data(self) -> None:
        job, w, m = self.job, self.worker, self.job.model
        self.ds = LeRobotDataset(job.dataset)
        shard = job.train_episodes[w.rank :: w.world]
        self.attempts = load_attempts(self.ds, shard, m.cameras, m.image_size)
        if not len(self.attempts[3]):
            raise DatasetError(
                f"{self.ds.root}: worker {w.rank}'s episodes {shard} hold no critical attempt"
            )
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def build_model(self):
        model = ApprovalModel(self.job.model)
        model.set_normalization(self.job.meta["normalization"])
        return model

    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        images, states, actions, labels = self.attempts
        idx = balanced_batch(labels, self.run.batch_size, rng)
        device = self.worker.device
        logits = self.module(
            *(torch.from_numpy(a[idx]).to(device) for a in (images, states, actions))
        )
        loss = self.loss_fn(logits, torch.from_numpy(labels[idx]).to(device))
        return {"loss": self.optimize(loss, lr)}, len(idx)

    def evaluate(self, step: int, mlflow) -> dict:
        job, m = self.job, self.job.model
        if not job.held_episodes:
            return {}
        held = load_attempts(self.ds, job.held_episodes, m.cameras, m.image_size)
        return approval_metrics(self.plain, *held, device=self.worker.device)

    def checkpoint_meta(self, step: int, metrics: dict) -> dict:
        return {**self.job.meta, "step": step, "metrics": metrics}

    def mlflow_params(self) -> dict:
        return {**super().mlflow_params(), "attempts": self.job.meta["attempts"]}


def run(cfg: SelectorTrainConfig) -> TrainingResult:
    """Train (or resume) the selector's scorer; the final checkpoint."""
    t0 = time.time()
    mlflow_uri = check_tracking_uri() if cfg.run.mlflow else None
    _, meta, train, held, _ = scan(cfg)
    job = SelectorJob(meta["dataset"], ApprovalConfig(**meta["model"]), train, held, meta)
    return run_training(
        SelectorTrainer,
        cfg,
        job,
        run_name=cfg.run_name,
        resume=[("model", meta["model"], None), ("recipe", meta["recipe"], None)],
        mlflow_uri=mlflow_uri,
        started=t0,
    )
