"""Training the reward classifier on Ray Train (DDP); `flywheel train-classifier` calls `run`.

Labels come from a success-frames CSV (`labels`) or the dataset's `next.reward`
(`pipelines.classifier.labels`); the driver reads and checks them all before any worker starts,
and hands each worker its episodes' labels.

Data: the episodes are split, with ``seed``, into training and held-out episodes (``holdout``);
the held-out ones are split again, alternately, into validation episodes (the threshold is
chosen on them) and test episodes (the reported accuracy, precision and recall are measured on
them, at that threshold), so no figure is measured on the frames that chose it (a single held-
out episode has to do both, and the threshold rule says so). Each DDP worker decodes only its
own shard of the training episodes (episodes with success frames and without dealt round-robin
separately, so every worker sees both classes), once, at the model's input size (128 x 128 by
default: 48 KB per camera per frame). Each step every worker draws a class-balanced batch from
its shard (half success frames), shifts every image at random (pad 4, edge pixels repeated) and
takes a BCE-with-logits step; DDP averages the gradients.

Checkpoints every `checkpoint_every` steps in `storage/name`; the same command again
resumes from the last one (Ray Train V2: same name and storage); a run name holding another
model or other labels is refused. At the last step rank 0 scores the validation and test
episodes, chooses the threshold (best F1, or the lowest threshold with `min_precision`),
stores it in the final checkpoint and logs to MLflow: losses, samples/s, accuracy, precision
and recall on validation and test frames, `confusion.tsv` and `precision_recall.png`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.classifier.config import KIND, ClassifierTrainConfig
from pipelines.classifier.data import (
    Frames,
    balanced_indices,
    load_frames,
    shard_episodes,
)
from pipelines.classifier.labels import EpisodeLabels, read_labels
from pipelines.classifier.metrics import (
    binary_metrics,
    choose_threshold,
    confusion_table,
    pr_figure,
)
from pipelines.classifier.model import ClassifierConfig, RewardClassifier, predict
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.runtime.run_config import check_run
from pipelines.runtime.schedule import split_episodes
from pipelines.runtime.tracking import check_tracking_uri
from pipelines.runtime.training import Trainer, TrainingResult, run_training
from pipelines.vision.images import random_shift


@dataclass
class ClassifierJob:
    """What the driver hands every worker besides the config."""

    dataset: str  # resolved path
    model: ClassifierConfig
    identity: dict  # what a run name trains: the model and the label source
    label_source: str
    labels: dict[int, dict]  # EpisodeLabels.to_json() per episode
    shards: list[list[int]]  # training episodes per worker
    validation_episodes: list[int]
    test_episodes: list[int]
    train_frames: int


def split_held_out(held: list[int]) -> tuple[list[int], list[int]]:
    """(validation, test) episodes: alternately; a single held-out episode serves as both."""
    held = sorted(held)
    if len(held) < 2:
        return held, held
    return held[0::2], held[1::2]


class ClassifierTrainer(Trainer):
    """The classifier's part of the shared Ray Train loop (module docstring)."""

    kind = KIND
    experiment = "flywheel-train-classifier"

    def frames(self, episodes: list[int]) -> Frames:
        m, labels = self.job.model, self.job.labels
        parts = [
            load_frames(self.ds, EpisodeLabels.from_json(e, labels[e]), m.cameras, m.image_size)
            for e in episodes
        ]
        return Frames.concat(parts, len(m.cameras), m.image_size)

    def load_data(self) -> None:
        self.ds = LeRobotDataset(self.job.dataset)
        self.train = self.frames(self.job.shards[self.worker.rank])
        self.quality = {"threshold": 0.5, "threshold_rule": "default 0.5 (training not finished)"}
        self.weight_decay = self.config.weight_decay
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def build_model(self):
        return RewardClassifier(self.job.model)

    def step(self, step: int, lr: float, rng: np.random.Generator) -> tuple[dict, int]:
        device, f = self.worker.device, self.train
        idx = balanced_indices(f.labels, self.run.batch_size, rng)
        images = torch.from_numpy(random_shift(f.images[idx], self.config.shift, rng))
        target = torch.from_numpy(f.labels[idx].astype(np.float32)).to(device)
        loss = self.loss_fn(self.module(images.to(device)), target)
        return {"loss": self.optimize(loss, lr)}, len(idx)

    def report_metrics(self) -> dict:
        return {"train_frames": self.job.train_frames}

    def evaluate(self, step: int, mlflow) -> dict:
        """Choose the threshold on the validation episodes, measure it on the test episodes."""
        job, device = self.job, self.worker.device
        val, test = self.frames(job.validation_episodes), self.frames(job.test_episodes)
        p_val, p_test = predict(self.plain, val, device), predict(self.plain, test, device)
        threshold, rule = choose_threshold(p_val, val.labels, self.config.min_precision)
        if job.validation_episodes == job.test_episodes and len(test):
            rule += "; the one held-out episode also measures it"
        self.quality = {"threshold": threshold, "threshold_rule": rule}
        out = {"threshold": threshold}
        for prefix, probs, f in (("val", p_val, val), ("test", p_test, test)):
            if len(f):
                m = binary_metrics(probs, f.labels, threshold)
                out.update({f"{prefix}_{k}": v for k, v in m.items()})
        if mlflow is not None and len(test):
            m = binary_metrics(p_test, test.labels, threshold)
            mlflow.log_text(confusion_table(m), "confusion.tsv")
            title = (
                f"test episodes: accuracy {m['accuracy']:.4f}, precision {m['precision']:.4f}, "
                f"recall {m['recall']:.4f}"
            )
            if test.labels.any():
                figure = pr_figure(p_test, test.labels, threshold, title)
                mlflow.log_figure(figure, "precision_recall.png")
        return out

    def checkpoint_meta(self, step: int, metrics: dict) -> dict:
        job = self.job
        return {
            "step": step,
            "name": self.plan.run_name,
            "model": job.model.to_dict(),
            "run": job.identity,
            **self.quality,
            "labels": job.label_source,
            "dataset": job.dataset,
            "validation_episodes": job.validation_episodes,
            "test_episodes": job.test_episodes,
            "metrics": metrics,
        }

    def mlflow_params(self) -> dict:
        job = self.job
        return {**super().mlflow_params(), "dataset": job.dataset, "labels": job.label_source}


@dataclass
class ClassifierTrainResult(TrainingResult):
    threshold: float = 0.5
    threshold_rule: str = ""
    unlabeled: list[int] = field(default_factory=list)


def check_config(cfg: ClassifierTrainConfig) -> None:
    """A one-line DatasetError for what cannot train."""
    check_run(cfg.run, min_batch=2)
    if cfg.shift < 0:
        raise DatasetError(f"--shift {cfg.shift}: at least 0")
    if not 32 <= cfg.image_size <= 512:
        raise DatasetError(f"--image-size {cfg.image_size}: between 32 and 512")
    if not cfg.weight_decay >= 0:
        raise DatasetError(f"--weight-decay {cfg.weight_decay}: must be >= 0")
    if cfg.min_precision is not None and not 0 < cfg.min_precision <= 1:
        raise DatasetError(f"--min-precision {cfg.min_precision}: in (0, 1]")
    try:
        ClassifierConfig(cameras=["x"], encoder=cfg.encoder)
    except ValueError as e:
        raise DatasetError(f"--encoder: {e}") from None


def prepare(cfg: ClassifierTrainConfig, episodes: list[int] | None) -> tuple[ClassifierJob, list]:
    """Every check before Ray starts: (the workers' job, dataset episodes left unlabeled)."""
    run = cfg.run
    ds = LeRobotDataset(cfg.dataset)
    cameras = ds.camera_keys
    if not cameras:
        raise DatasetError(f"{ds.root}/meta/info.json: no camera features")
    labels, source, unlabeled = read_labels(ds, cfg.labels, episodes)
    if not labels:
        raise DatasetError(f"{cfg.labels or ds.root}: no labeled episodes")
    chosen = sorted(labels)
    train, held = split_episodes(chosen, run.holdout, run.seed) if run.holdout > 0 else (chosen, [])
    validation, test = split_held_out(held)
    success_frames, kept_frames = {}, {}
    for e in chosen:  # frames the classifier sees (reset frames excluded), success among them
        y, keep = labels[e].arrays(ds.episode_length(e))
        kept_frames[e], success_frames[e] = int(keep.sum()), int(y[keep].sum())
    pos = sum(success_frames[e] for e in train)
    neg = sum(kept_frames[e] - success_frames[e] for e in train)
    if not pos or not neg:
        what = "success" if not pos else "failure"
        raise DatasetError(
            f"{source}: no {what} frames in the {len(train)} training episodes "
            "(the classifier needs both)"
        )
    for key in cameras:  # fail fast on a codec OpenCV cannot decode
        next(iter(ds.iter_camera_frames(train[0], key)))
    shards = shard_episodes(train, {e for e in train if success_frames[e]}, run.workers)
    model = ClassifierConfig(cameras=cameras, image_size=cfg.image_size, encoder=cfg.encoder)
    job = ClassifierJob(
        dataset=str(ds.root.resolve()),
        model=model,
        identity={**model.to_dict(), "labels": source},
        label_source=source,
        labels={e: labels[e].to_json() for e in chosen},
        shards=shards,
        validation_episodes=validation,
        test_episodes=test,
        train_frames=pos + neg,
    )
    return job, unlabeled


def run(cfg: ClassifierTrainConfig, episodes: list[int] | None = None) -> ClassifierTrainResult:
    """Train (or resume) the classifier on `episodes` (default: every labeled one)."""
    t0 = time.time()
    check_config(cfg)
    mlflow_uri = check_tracking_uri() if cfg.run.mlflow else None
    job, unlabeled = prepare(cfg, episodes)
    result = run_training(
        ClassifierTrainer,
        cfg,
        job,
        run_name=cfg.run_name,
        resume=[("run", job.identity, None)],
        mlflow_uri=mlflow_uri,
        started=t0,
        before_start=lambda: _check_shards(job, cfg),  # a finished run needs no workers
    )
    return ClassifierTrainResult(
        result.checkpoint,
        result.step,
        result.metrics,
        result.seconds,
        result.meta,
        result.meta.get("threshold", 0.5),
        result.meta.get("threshold_rule", ""),
        unlabeled,
    )


def _check_shards(job: ClassifierJob, cfg: ClassifierTrainConfig) -> None:
    if any(not s for s in job.shards):
        train = sum(len(s) for s in job.shards)
        raise DatasetError(
            f"--workers {cfg.run.workers}: only {train} training episodes, one worker would "
            "have none"
        )
