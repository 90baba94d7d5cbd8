"""Training the advantage estimator on Ray Train (DDP); `flywheel train-estimator` calls `run`.

Data: every worker takes its own shard of the training episodes (episode i goes to worker
i mod N) and decodes only those, once, into memory at the model's input size (64 x 64 by
default: 12 KB per camera per frame). A pair needs two arbitrary frames of one episode, so a
worker needs random access inside its episodes: a per-worker episode cache gives it without
any worker decoding the whole dataset, where streaming Ray Data shards would deliver frames in
order and would have to be re-assembled into episodes anyway. Each step every worker samples
`batch_size` pairs from its shard; DDP averages the gradients.

Checkpoints (model, optimizer, step) every `checkpoint_every` steps in `storage/name`; running
the same command again resumes from the last one, and a worker that dies mid-run is replaced
and the group resumes from the last checkpoint (`pipelines.runtime.training`). Rank 0 logs the
losses, the held-out evaluation (Spearman correlation of the predicted value with
stage_progress_gt) and a PNG of predicted against true progress on held-out episodes to MLflow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.estimator.config import KIND, EstimatorTrainConfig
from pipelines.estimator.data import EpisodeFrames, check_dataset, load_episode, training_batch
from pipelines.estimator.model import VARIANTS, AdvantageEstimator, EstimatorConfig
from pipelines.runtime.run_config import check_run
from pipelines.runtime.schedule import split_episodes
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import Trainer, TrainingResult, run_training


@dataclass
class EstimatorJob:
    """What the driver hands every worker besides the config."""

    dataset: str  # resolved path
    model: EstimatorConfig
    train_episodes: list[int]
    held_episodes: list[int]


def predict_progress(model, frames: list[EpisodeFrames], variant: str, device):
    """(predicted value frame 0 -> frame i, true stage_progress_gt) over held-out episodes."""
    predicted, true = [], []
    model.eval()
    with torch.no_grad():
        for ep in frames:
            n = len(ep)
            if variant == "kai0":
                images = np.stack([ep.images[[0, i]] for i in range(n)])
                state = np.stack([ep.state[[0, i]] for i in range(n)])
            else:
                images, state = ep.images[:, None], ep.state[:, None]
            values = []
            for a in range(0, n, 128):
                out = model(
                    torch.from_numpy(images[a : a + 128]).to(device),
                    torch.from_numpy(state[a : a + 128]).to(device),
                )
                values.append(out.float().cpu().numpy())
            v = np.concatenate(values)
            v[0] = 0.0
            predicted.append(v)
            true.append(ep.progress)
    model.train()
    return np.concatenate(predicted), np.concatenate(true)


def progress_figure(predicted: np.ndarray, true: np.ndarray, spearman: float, step: int):
    import matplotlib  # plotting only at the end of a run, on rank 0

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, predicted, s=3, alpha=0.4)
    ax.plot([0, 1], [0, 1], color="red", lw=1)
    ax.set_xlabel("true stage_progress_gt")
    ax.set_ylabel("predicted value (frame 0 -> frame)")
    ax.set_title(f"held-out episodes, step {step}: Spearman {spearman:.3f}", fontsize=9)
    return fig


class EstimatorTrainer(Trainer):
    """The estimator's part of the shared Ray Train loop (module docstring)."""

    kind = KIND
    experiment = "flywheel-train-estimator"

    def load_data(self) -> None:
        job, w = self.job, self.worker
        self.ds = LeRobotDataset(job.dataset)
        shard = job.train_episodes[w.rank :: w.world]
        m = job.model
        self.frames = [load_episode(self.ds, e, m.cameras, m.image_size) for e in shard]

    def build_model(self):
        return AdvantageEstimator(self.job.model)

    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        device = self.worker.device
        images, state, target = training_batch(
            self.frames, self.run.batch_size, rng, self.job.model.variant
        )
        pred = self.module(torch.from_numpy(images).to(device), torch.from_numpy(state).to(device))
        loss = torch.nn.functional.mse_loss(pred, torch.from_numpy(target).to(device))
        return {"loss": self.optimize(loss, lr)}, len(target)

    def evaluate(self, step: int, mlflow) -> dict:
        job, m = self.job, self.job.model
        if not job.held_episodes:
            return {}
        from scipy.stats import spearmanr  # scipy only for this one figure

        held = [load_episode(self.ds, e, m.cameras, m.image_size) for e in job.held_episodes]
        predicted, true = predict_progress(self.plain, held, m.variant, self.worker.device)
        out = {
            "eval_spearman": float(spearmanr(predicted, true).statistic),
            "eval_mae": float(np.abs(predicted - true).mean()),
        }
        if mlflow is not None:
            fig = progress_figure(predicted, true, out["eval_spearman"], step)
            mlflow.log_figure(fig, "predicted_vs_true_progress.png")
        return out

    def checkpoint_meta(self, step: int, metrics: dict) -> dict:
        m = self.job.model
        return {
            "step": step,
            "variant": m.variant,
            "model": m.to_dict(),
            "dataset": self.job.dataset,
            "metrics": metrics,
        }

    def mlflow_params(self) -> dict:
        return {**super().mlflow_params(), "dataset": self.job.dataset}


def check_config(cfg: EstimatorTrainConfig) -> None:
    if cfg.variant not in VARIANTS:
        raise DatasetError(f"--variant {cfg.variant!r}: one of {VARIANTS}")
    check_run(cfg.run)
    if not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")


def run(cfg: EstimatorTrainConfig, episodes: list[int] | None = None) -> TrainingResult:
    """Train (or resume) the estimator on `episodes` (default: all); the final checkpoint."""
    t0 = time.time()
    check_config(cfg)
    mlflow_uri = check_tracking_uri() if cfg.run.mlflow else None
    ds = LeRobotDataset(cfg.dataset)
    episodes = episodes if episodes is not None else ds.episode_indices
    cameras = check_dataset(ds, episodes)
    holdout = cfg.run.holdout
    train, held = (
        (episodes, []) if holdout <= 0 else split_episodes(episodes, holdout, cfg.run.seed)
    )
    if not train:
        raise DatasetError(f"{ds.root}: no training episodes left after the held-out split")
    model = EstimatorConfig(
        variant=cfg.variant,
        cameras=cameras,
        image_size=cfg.image_size,
        encoder=cfg.encoder,
        state_dim=int(ds.features["observation.state"]["shape"][0]),
    )
    job = EstimatorJob(str(ds.root.resolve()), model, train, held)
    return run_training(
        EstimatorTrainer,
        cfg,
        job,
        run_name=cfg.run_name,
        resume=[("model", model.to_dict(), None)],
        mlflow_uri=mlflow_uri,
        started=t0,
    )
