"""The `reward-threshold` sweep: the classifier's decision threshold, on frames scored once.

The frames are scored once, in the driver (the checkpoint's held-out episodes when DATASET is
the one it was trained on, else every episode); every trial measures accuracy, precision,
recall and F1 from those scores. The metric is F1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray.tune

from pipelines.classifier.config import KIND as CLASSIFIER
from pipelines.classifier.data import Frames, load_frames
from pipelines.classifier.labels import read_labels
from pipelines.classifier.metrics import binary_metrics
from pipelines.classifier.model import load_checkpoint, predict
from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.runtime.checkpoints import read_meta
from pipelines.sweeps.config import SweepConfig
from pipelines.sweeps.kind import SweepKind
from pipelines.sweeps.space import Param


class ThresholdSweep(SweepKind):
    name = "reward-threshold"
    inputs = ("CHECKPOINT", "DATASET")
    params = (Param("threshold", float, 0, 1),)
    required = "threshold"
    metric = "f1"
    metrics = ("f1", "accuracy", "precision", "recall", "tp", "fp", "fn", "tn", "frames")
    trial_resources = {"CPU": 1}  # numpy over scores computed once

    def check_inputs(self, cfg: SweepConfig) -> None:
        read_meta(cfg.inputs[0], CLASSIFIER)  # a classifier checkpoint, before Ray starts

    def trainable(self, cfg: SweepConfig, params: list[str], out: Callable) -> Callable:
        out(f"Scoring the held-out frames of {cfg.inputs[1]} once ...")
        probs, labels, episodes = score_held_out(*cfg.inputs)
        out(f"  {len(probs)} frames of {len(episodes)} episodes, {int(labels.sum())} success")
        return ray.tune.with_parameters(threshold_trial, probs=probs, labels=labels)


def threshold_trial(config: dict, probs=None, labels=None) -> None:
    """One reward-threshold trial: the metrics of the shared scores at its threshold."""
    ray.tune.report(binary_metrics(probs, labels, float(config["threshold"])))


def score_held_out(checkpoint: str, dataset: str) -> tuple:
    """(probabilities, labels, episodes scored) of the classifier on its held-out frames.

    The checkpoint's validation and test episodes when `dataset` is the one it was trained on;
    every labeled episode of any other dataset. Labels as at training (next.reward or the
    success-frames CSV).
    """
    model, config, meta = load_checkpoint(checkpoint)
    ds = LeRobotDataset(dataset)
    missing = [c for c in config.cameras if c not in ds.camera_keys]
    if missing:
        raise DatasetError(f"{ds.root}: no camera {missing[0]!r} (the classifier's cameras)")
    source = meta.get("labels", "next.reward")
    csv_path = None if source == "next.reward" or not Path(str(source)).exists() else source
    same = Path(meta.get("dataset", "")).resolve() == ds.root.resolve()
    held = sorted(set(meta.get("validation_episodes", [])) | set(meta.get("test_episodes", [])))
    episodes = held if same and held else None
    labels, _, _ = read_labels(ds, csv_path, episodes)
    if not labels:
        raise DatasetError(f"{ds.root}: no labeled episodes to score")
    parts = [load_frames(ds, labels[e], config.cameras, config.image_size) for e in sorted(labels)]
    frames = Frames.concat(parts, len(config.cameras), config.image_size)
    probs = predict(model, frames, "cpu")
    return probs, np.asarray(frames.labels, bool), sorted(labels)
