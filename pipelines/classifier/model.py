"""The reward classifier (plain PyTorch), and what is exported from its checkpoints.

Architecture (LeRobot's and hil-serl's reward classifier, trained from scratch):

    every camera image (uint8, S x S, /255) -> the encoder's trunk (one set of weights for all
    cameras; `pipelines.vision.encoders`, `small_convnet` by default, `resnet10` for GPU serving)
    -> per camera: learned spatial embeddings (K weighted sums over the feature map per
       channel) -> Linear(256) -> LayerNorm -> Tanh
    -> cameras concatenated -> Linear(256) -> Dropout(0.1) -> LayerNorm -> ReLU -> Linear(1)

one logit, trained with BCE with logits; the whole network trains (LeRobot freezes a pretrained
encoder, which Flywheel does not have: nothing is downloaded). Learned spatial embeddings keep
*where* things are in the image (a global average pool would not), which is what tells a cube
between the jaws from a cube beside them.

Exports from a checkpoint:

* `load_reward_model(checkpoint)` -> `RewardModel`: success probabilities for batches of frames,
  with the threshold chosen at training time (what `serving.reward` serves).
* `load_feature_extractor(checkpoint)` -> `FeatureExtractor`: the frozen encoder, camera images
  to features (what HIL-SERL uses as its vision encoder): `features(images)` maps
  `{camera: uint8 H x W x 3 or N x H x W x 3}` to an N x `feature_dim` float32 array, the
  per-camera 256-d embeddings concatenated in the checkpoint's camera order (the input of the
  classifier's head). Eval mode, no gradients, deterministic.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.classifier.config import KIND
from pipelines.runtime.checkpoints import load_state, read_meta, write_checkpoint
from pipelines.vision.encoders import spatial_encoders, trunk_of
from pipelines.vision.images import resize

CAMERA_PREFIX = "observation.images."


@dataclass
class ClassifierConfig:
    cameras: list[str] = field(default_factory=list)  # image feature keys, in order
    image_size: int = 128
    encoder: str = "small_convnet"
    spatial_features: int = 8  # learned spatial embeddings per trunk channel
    camera_dim: int = 256  # per-camera embedding (the frozen feature extractor's output)
    hidden_dim: int = 256
    dropout: float = 0.1

    def __post_init__(self):
        if self.encoder not in spatial_encoders():
            raise ValueError(f"encoder {self.encoder!r}: one of {spatial_encoders()}")
        if not self.cameras:
            raise ValueError("a classifier needs at least one camera")

    @property
    def feature_dim(self) -> int:
        return len(self.cameras) * self.camera_dim

    def to_dict(self) -> dict:
        return asdict(self)


class SpatialEmbeddings(nn.Module):
    """B x C x h x w -> B x (C * K): K learned weightings of each channel's feature map."""

    def __init__(self, channels: int, height: int, width: int, features: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(channels, height, width, features))
        nn.init.kaiming_normal_(self.kernel, mode="fan_in", nonlinearity="linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,chwk->bck", x, self.kernel).flatten(1)


class RewardClassifier(nn.Module):
    """logit = head([embed_c(trunk(image_c)) for each camera c]) (module docstring)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.trunk, channels = trunk_of(config.encoder)
        with torch.no_grad():
            probe = torch.zeros(1, 3, config.image_size, config.image_size)
            _, _, h, w = self.trunk.eval()(probe).shape
        self.trunk.train()
        self.embed = nn.ModuleList(
            nn.Sequential(
                SpatialEmbeddings(channels, h, w, config.spatial_features),
                nn.Linear(channels * config.spatial_features, config.camera_dim),
                nn.LayerNorm(config.camera_dim),
                nn.Tanh(),
            )
            for _ in config.cameras
        )
        self.head = nn.Sequential(
            nn.Linear(config.feature_dim, config.hidden_dim),
            nn.Dropout(config.dropout),
            nn.LayerNorm(config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, 1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features of frames: N x C x S x S x 3 uint8 (C cameras) -> N x (C * camera_dim)."""
        n, c, h, w, _ = images.shape
        x = images.reshape(n * c, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        maps = self.trunk(x)
        maps = maps.reshape(n, c, *maps.shape[1:])
        return torch.cat([embed(maps[:, i]) for i, embed in enumerate(self.embed)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """N x C x S x S x 3 uint8 -> N logits."""
        return self.head(self.encode(images)).squeeze(1)


# --------------------------------------------------------------------------- inputs


def camera_name(key: str) -> str:
    return key[len(CAMERA_PREFIX) :] if key.startswith(CAMERA_PREFIX) else key


def camera_batch(
    images: dict, cameras: list[str], size: int, resize_images: bool = False
) -> np.ndarray:
    """`{camera: uint8 H x W x 3 or N x H x W x 3}` -> N x C x size x size x 3 uint8.

    A camera may be named by its feature key (`observation.images.front`) or its short name
    (`front`). A ValueError of one line for a wrong camera set, dtype, shape or size (other
    sizes are resized only with `resize_images`, with OpenCV's INTER_AREA as training does).
    """
    if not isinstance(images, dict):
        raise ValueError("images: expected a mapping of camera name to image")
    given = {}
    for key, value in images.items():
        full = key if key in cameras else CAMERA_PREFIX + str(key)
        if full not in cameras or full in given:
            raise ValueError(
                f"cameras {sorted(map(str, images))}: the model takes {cameras} "
                f"(or {[camera_name(c) for c in cameras]})"
            )
        given[full] = value
    missing = [c for c in cameras if c not in given]
    if missing:
        raise ValueError(f"cameras {sorted(map(str, images))}: missing {missing}")
    stacked, count = [], None
    for key in cameras:
        a = np.asarray(given[key])
        if a.dtype != np.uint8:
            raise ValueError(f"{key}: dtype {a.dtype}, expected uint8 RGB")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"{key}: shape {list(a.shape)}, expected H x W x 3 or N x H x W x 3")
        if count is not None and len(a) != count:
            raise ValueError(f"{key}: {len(a)} frames, other cameras have {count}")
        count = len(a)
        if a.shape[1:3] != (size, size):
            if not resize_images:
                raise ValueError(
                    f"{key}: {a.shape[2]}x{a.shape[1]}, the model takes {size}x{size} "
                    "(resize it, or serve with --resize)"
                )
            a = np.stack([resize(f, size) for f in a])
        stacked.append(a)
    return np.ascontiguousarray(np.stack(stacked, axis=1))


def predict(model, frames, device, batch: int = 256) -> np.ndarray:
    """Success probabilities of `Frames` (eval mode, no gradients)."""
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for a in range(0, len(frames), batch):
            x = torch.from_numpy(frames.images[a : a + batch]).to(device)
            out.append(torch.sigmoid(model(x)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- checkpoints


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode on `device`, its ClassifierConfig, the checkpoint's meta)."""
    meta = read_meta(path, KIND)
    config = ClassifierConfig(**meta["model"])
    model = RewardClassifier(config)
    model.load_state_dict(load_state(path)["model"])
    return model.to(device).eval(), config, meta


def save_model(
    folder: str | os.PathLike,
    model: RewardClassifier,
    *,
    step: int = 0,
    threshold: float = 0.5,
    name: str = "classifier",
) -> str:
    """Write `model` as a classifier checkpoint folder (no optimizer state): for models made
    outside `flywheel train-classifier`, such as the untrained ones the latency benchmark
    serves (latency does not depend on the weights)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "step": step,
        "name": name,
        "model": model.config.to_dict(),
        "threshold": threshold,
        "threshold_rule": "given",
    }
    write_checkpoint(folder, KIND, {"model": model.state_dict(), "step": step}, meta)
    return str(folder)


class RewardModel:
    """A trained classifier for scoring: `probabilities(N x C x S x S x 3 uint8) -> N floats`."""

    def __init__(self, model: RewardClassifier, threshold: float, name: str, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.config = model.config
        self.cameras = list(model.config.cameras)
        self.image_size = model.config.image_size
        self.threshold = float(threshold)
        self.name = name
        self.device = device

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            return torch.sigmoid(self.model(x)).float().cpu().numpy()


def model_name(meta: dict) -> str:
    return f"{meta.get('name', 'classifier')}@{meta['step']} ({meta['model']['encoder']})"


def load_reward_model(path: str | os.PathLike, device: str | None = None) -> RewardModel:
    """The classifier at `path` with its stored threshold (0.5 if none was chosen)."""
    device = device or default_device()
    model, _, meta = load_checkpoint(path, device)
    return RewardModel(model, meta.get("threshold", 0.5), model_name(meta), device)


class FeatureExtractor:
    """The classifier's frozen image encoder: camera images -> `feature_dim` features.

    `features({camera: uint8 H x W x 3 or N x H x W x 3})` -> N x feature_dim float32, the
    per-camera embeddings concatenated in `cameras` order. Images must be `image_size` square
    unless `resize=True`. `module` is the frozen torch module (no gradients) for callers that
    batch on their own device: `module.encode(N x C x S x S x 3 uint8 tensor)`.
    """

    def __init__(self, model: RewardClassifier, device: str = "cpu"):
        self.module = model.to(device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.cameras = list(model.config.cameras)
        self.image_size = model.config.image_size
        self.feature_dim = model.config.feature_dim
        self.device = device

    def features(self, images: dict, resize: bool = False) -> np.ndarray:
        batch = camera_batch(images, self.cameras, self.image_size, resize)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            return self.module.encode(x).float().cpu().numpy()


def load_feature_extractor(path: str | os.PathLike, device: str | None = None) -> FeatureExtractor:
    """The frozen feature extractor of the classifier checkpoint at `path`."""
    device = device or default_device()
    model, _, _ = load_checkpoint(path, device)
    return FeatureExtractor(model, device)
