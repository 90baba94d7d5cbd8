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

`recap` (RECAP's value from episode outcomes, no progress column needed): the driver takes
each episode's outcome, task and value target and the state's normalization
(`pipelines.estimator.recap`); a step is the cross-entropy of the value's logits against the
two-hot targets of `batch_size` frames (`pipelines.estimator.value`). Its held-out evaluation
is `eval_mae`, `eval_spearman_success` (V against the target over successful episodes) and
`eval_auroc_midpoint` (successes told from failures by V at their midpoints), with a PNG of V
against the target on held-out successful and failed episodes.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.estimator.config import KIND, PROGRESS_VARIANTS, EstimatorTrainConfig
from pipelines.estimator.data import (
    EpisodeFrames,
    check_dataset,
    load_episode,
    training_batch,
    value_batch,
)
from pipelines.estimator.model import VARIANTS, AdvantageEstimator, EstimatorConfig
from pipelines.estimator.recap import RecapSetup, training_setup
from pipelines.estimator.value import cross_entropy, value_metrics
from pipelines.runtime.run_config import check_run
from pipelines.runtime.schedule import split_episodes
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import Trainer, TrainingResult, run_training
from pipelines.vision.prompts import tokenize


@dataclass
class EstimatorJob:
    """What the driver hands every worker besides the config."""

    dataset: str  # resolved path
    model: EstimatorConfig
    train_episodes: list[int]
    held_episodes: list[int]
    recap: RecapSetup | None = None  # the recap variant's targets, tasks, normalization

    def load(self, ds: LeRobotDataset, episode: int) -> EpisodeFrames:
        m, recap = self.model, self.recap
        if recap is None:
            return load_episode(ds, episode, m.cameras, m.image_size)
        target, task = recap.targets[episode], recap.tasks[episode]
        return load_episode(ds, episode, m.cameras, m.image_size, target, task)


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


def predict_values(model, frames: list[EpisodeFrames], device) -> list[np.ndarray]:
    """recap: V of every frame of each episode (with its task text)."""
    out = []
    model.eval()
    with torch.no_grad():
        for ep in frames:
            tokens = torch.from_numpy(tokenize([ep.task], model.config.prompt_vocab)).to(device)
            values = []
            for a in range(0, len(ep), 128):
                images = torch.from_numpy(ep.images[a : a + 128, None]).to(device)
                state = torch.from_numpy(ep.state[a : a + 128, None]).to(device)
                batch_tokens = tokens.expand(len(images), -1)
                values.append(model(images, state, batch_tokens).float().cpu().numpy())
            out.append(np.concatenate(values))
    model.train()
    return out


def value_figure(values, targets, outcomes, metrics: dict, step: int):
    import matplotlib  # plotting only at the end of a run, on rank 0

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for success, color, name in ((True, "tab:blue", "success"), (False, "tab:red", "failure")):
        chosen = [i for i, s in enumerate(outcomes) if s == success]
        if chosen:
            ax.scatter(
                np.concatenate([targets[i] for i in chosen]),
                np.concatenate([values[i] for i in chosen]),
                s=3,
                alpha=0.4,
                color=color,
                label=f"{name} ({len(chosen)} episodes)",
            )
    ax.plot([-1, 0], [-1, 0], color="black", lw=1)
    ax.set_xlabel("value target (from the episode's outcome)")
    ax.set_ylabel("predicted V")
    ax.legend(fontsize=7)
    shown = ", ".join(f"{k[5:]} {v:.3f}" for k, v in metrics.items())
    ax.set_title(f"held-out episodes, step {step}: {shown}", fontsize=7)
    return fig


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
        self.frames = [job.load(self.ds, e) for e in shard]

    def build_model(self):
        model = AdvantageEstimator(self.job.model)
        if self.job.recap is not None:
            state = self.job.recap.state
            model.set_state_normalization(state["mean"], state["std"])
        return model

    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        device = self.worker.device
        if self.job.recap is not None:
            images, state, tokens, probs, _ = value_batch(
                self.frames, self.run.batch_size, rng, self.job.model.prompt_vocab
            )
            logits = self.module(
                torch.from_numpy(images).to(device),
                torch.from_numpy(state).to(device),
                torch.from_numpy(tokens).to(device),
                logits=True,
            )
            loss = cross_entropy(logits, torch.from_numpy(probs).to(device))
            return {"loss": self.optimize(loss, lr)}, len(probs)
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
        held = [job.load(self.ds, e) for e in job.held_episodes]
        if job.recap is not None:
            values = predict_values(self.plain, held, self.worker.device)
            targets = [ep.value_target for ep in held]
            outcomes = [job.recap.outcomes[ep.episode] for ep in held]
            out = value_metrics(values, targets, outcomes)
            if mlflow is not None:
                fig = value_figure(values, targets, outcomes, out, step)
                mlflow.log_figure(fig, "predicted_vs_target_value.png")
            return out
        from scipy.stats import spearmanr  # scipy only for this one figure

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
            **({"recap": self.job.recap.meta(m.bins)} if self.job.recap is not None else {}),
        }

    def mlflow_params(self) -> dict:
        return {**super().mlflow_params(), "dataset": self.job.dataset}


def check_config(cfg: EstimatorTrainConfig) -> None:
    if cfg.variant not in VARIANTS:
        raise DatasetError(f"--variant {cfg.variant!r}: one of {VARIANTS}")
    check_run(cfg.run)
    if not 16 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 16 and 512")
    if not (math.isfinite(cfg.c_fail_coef) and cfg.c_fail_coef >= 0):
        raise DatasetError(f"--c-fail-coef {cfg.c_fail_coef}: a number >= 0")
    if cfg.default_outcome not in (None, "failure"):
        raise DatasetError(f"--default-outcome {cfg.default_outcome!r}: failure, or unset")
    if cfg.variant in PROGRESS_VARIANTS:  # outcomes mean nothing to a progress estimator
        given = [
            f"--{name} {value}"
            for name, value, default in (
                ("c-fail-coef", cfg.c_fail_coef, EstimatorTrainConfig.c_fail_coef),
                ("default-outcome", cfg.default_outcome, None),
            )
            if value != default
        ]
        if given:
            raise DatasetError(
                f"{' and '.join(given)}: for --variant recap only ({cfg.variant} learns "
                "from stage_progress_gt)"
            )


PROGRESS_COLUMNS = ("observation.state", "stage_progress_gt")
NEWER_MODEL_KEYS = {k: getattr(EstimatorConfig, k) for k in ("bins", "prompt_vocab", "prompt_dim")}
"""What a checkpoint written before the recap variant trained as (it lacks these keys)."""


def run(cfg: EstimatorTrainConfig, episodes: list[int] | None = None) -> TrainingResult:
    """Train (or resume) the estimator on `episodes` (default: all); the final checkpoint."""
    t0 = time.time()
    check_config(cfg)
    mlflow_uri = check_tracking_uri() if cfg.run.mlflow else None
    ds = LeRobotDataset(cfg.dataset)
    episodes = episodes if episodes is not None else ds.episode_indices
    recap = cfg.variant == "recap"
    cameras = check_dataset(ds, episodes, ("observation.state",) if recap else PROGRESS_COLUMNS)
    holdout = cfg.run.holdout
    train, held = (
        (episodes, []) if holdout <= 0 else split_episodes(episodes, holdout, cfg.run.seed)
    )
    if not train:
        raise DatasetError(f"{ds.root}: no training episodes left after the held-out split")
    setup = None
    if recap:
        setup = training_setup(ds, episodes, train, cfg.c_fail_coef, cfg.default_outcome)
        warning = setup.uniform_warning(train)
        if warning:
            print(warning, file=sys.stderr)
    model = EstimatorConfig(
        variant=cfg.variant,
        cameras=cameras,
        image_size=cfg.image_size,
        encoder=cfg.encoder,
        state_dim=int(ds.features["observation.state"]["shape"][0]),
    )
    job = EstimatorJob(str(ds.root.resolve()), model, train, held, setup)
    resume = [("model", model.to_dict(), NEWER_MODEL_KEYS)]
    if setup is not None:
        resume.append(("recap", setup.resume_key(), None))
    return run_training(
        EstimatorTrainer,
        cfg,
        job,
        run_name=cfg.run_name,
        resume=resume,
        mlflow_uri=mlflow_uri,
        started=t0,
    )
