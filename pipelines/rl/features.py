"""`--encoder frozen:CHECKPOINT`: the frozen image encoder of a trained estimator or classifier.

HIL-SERL on CPUs needs the vision out of the update: a frozen encoder maps each camera frame
to features once, in the collector that saw it (it needs them to act anyway), and the replay
buffer keeps the features (float16), never the images, so a learner update is an MLP update.

Two checkpoint kinds carry an image encoder trained on the robot's own data:

* `estimator` (`flywheel train-estimator`): `AdvantageEstimator.encode`, the shared camera
  encoder (ResNet-small by default) then its linear layer: 128 features per camera at the
  estimator's image size (64 x 64 by default);
* `classifier` (`flywheel train-classifier`, issue 11): `load_feature_extractor(checkpoint)`,
  the classifier's trunk and per-camera spatial embeddings: 256 features per camera, which keep
  where things are in the image.

Either is used in eval mode (batch-norm statistics fixed), without gradients. A HIL-SERL
checkpoint embeds the frozen encoder's weights and config (`export`), so the saved actor is
self-contained: evaluating it does not need the encoder's checkpoint any more.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pipelines.classifier.model import ClassifierConfig, RewardClassifier, load_feature_extractor
from pipelines.dataset import DatasetError
from pipelines.estimator.model import AdvantageEstimator, EstimatorConfig
from pipelines.runtime.checkpoints import checkpoint_kind, load_state, read_meta
from pipelines.vision.images import resize

FROZEN_KINDS = ("estimator", "classifier")


class FrozenEncoder:
    """Camera frames -> features: `features({camera: H x W x 3 or N x H x W x 3 uint8})` gives
    N x `feature_dim` float32 (cameras in `cameras` order). Frames of another size are resized
    (OpenCV INTER_AREA, as the encoder's training did)."""

    def __init__(self, kind: str, model, config: dict, source: str):
        self.kind = kind
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.config = config
        self.source = source
        self.cameras = list(config["cameras"])
        self.image_size = int(config["image_size"])
        per_camera = config["feature_dim"] if kind == "estimator" else config["camera_dim"]
        self.feature_dim = int(per_camera) * len(self.cameras)

    def batch(self, images: dict) -> np.ndarray:
        frames = []
        for key in self.cameras:
            a = np.asarray(images[key])
            if a.ndim == 3:
                a = a[None]
            if a.shape[1:3] != (self.image_size, self.image_size):
                a = np.stack([resize(f, self.image_size) for f in a])
            frames.append(a)
        return np.ascontiguousarray(np.stack(frames, axis=1))

    @torch.inference_mode()
    def features(self, images: dict, batch_size: int = 256) -> np.ndarray:
        x = self.batch(images)
        out = [
            self.model.encode(torch.from_numpy(x[i : i + batch_size])).float().numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

    def export(self) -> dict:
        return {
            "kind": self.kind,
            "config": self.config,
            "state": self.model.state_dict(),
            "source": self.source,
        }


def _build(kind: str, config: dict):
    if kind == "estimator":
        return AdvantageEstimator(EstimatorConfig(**config))
    return RewardClassifier(ClassifierConfig(**config))


def load_frozen_encoder(path: str | os.PathLike) -> FrozenEncoder:
    """The frozen encoder of an estimator or classifier checkpoint; a one-line DatasetError
    for anything else."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--encoder frozen:{path}: no such checkpoint")
    kind = checkpoint_kind(path)
    if kind not in FROZEN_KINDS:
        what = f"a {kind} checkpoint" if kind else "not a checkpoint folder"
        raise DatasetError(
            f"--encoder frozen:{path}: {what}; a frozen encoder comes from an estimator "
            "(flywheel train-estimator) or a reward classifier (flywheel train-classifier)"
        )
    meta = read_meta(path, kind)
    if kind == "classifier":
        extractor = load_feature_extractor(path, device="cpu")
        config = extractor.module.config.to_dict()
        return FrozenEncoder(kind, extractor.module, config, str(path))
    try:
        model = _build(kind, meta["model"])
        model.load_state_dict(load_state(path)["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise DatasetError(f"{path}: unusable {kind} checkpoint ({e})") from e
    return FrozenEncoder(kind, model, dict(meta["model"]), str(path))


def frozen_from_export(exported: dict) -> FrozenEncoder:
    """The frozen encoder a HIL-SERL checkpoint embeds (`FrozenEncoder.export`)."""
    model = _build(exported["kind"], exported["config"])
    model.load_state_dict(exported["state"])
    return FrozenEncoder(exported["kind"], model, exported["config"], exported["source"])
