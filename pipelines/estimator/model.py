"""The advantage estimator: image encoders, robot state and a value head (plain PyTorch).

Two variants, as in the stage-advantage reference:

* ``kai0``: two timesteps. Given a history frame h and a current frame c of one episode, it
  predicts clamp(stage_progress_gt[c] - stage_progress_gt[h], -1, 1).
* ``pi06``: the current frame only. It predicts stage_progress_gt[c] (the progress made since
  the start of the episode, i.e. the kai0 target with the history at progress 0).

Every camera image goes through one shared encoder (a compact ResNet by default; any encoder of
the registry in ``pipelines.vision.encoders``); the features of every camera and timestep are
concatenated with the robot state and fed to the reference's value head
Linear-SiLU-Linear-SiLU-Linear-Tanh.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pipelines.estimator.config import KIND, VARIANTS
from pipelines.runtime.checkpoints import load_state, read_meta
from pipelines.vision.encoders import ENCODERS


@dataclass
class EstimatorConfig:
    variant: str = "kai0"
    cameras: list[str] = field(default_factory=list)  # image feature keys, in order
    state_dim: int = 6
    image_size: int = 64  # images are resized to image_size x image_size before the encoder
    encoder: str = "resnet_small"
    feature_dim: int = 128
    hidden_dim: int = 256
    state_scale: float = 100.0  # SO-101 joints are in degrees: bring them near unit scale

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r}: one of {VARIANTS}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r}: one of {sorted(ENCODERS)}")

    @property
    def timesteps(self) -> int:
        return 2 if self.variant == "kai0" else 1

    def to_dict(self) -> dict:
        return asdict(self)


class AdvantageEstimator(nn.Module):
    """value = head([enc(image) for each timestep and camera] + [state for each timestep])."""

    def __init__(self, config: EstimatorConfig):
        super().__init__()
        self.config = config
        self.encoder = ENCODERS[config.encoder](config.feature_dim)
        n_in = config.timesteps * (len(config.cameras) * config.feature_dim + config.state_dim)
        self.head = nn.Sequential(
            nn.Linear(n_in, config.hidden_dim),
            nn.SiLU(),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.SiLU(),
            nn.Linear(config.hidden_dim, 1),
            nn.Tanh(),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features of frames: N x C x H x W x 3 uint8 (C cameras) -> N x (C * feature_dim)."""
        n, c, h, w, _ = images.shape
        x = images.reshape(n * c, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        return self.encoder(x).reshape(n, c * self.config.feature_dim)

    def value(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The head on encoded frames: features B x T x (C * feature_dim), state B x T x D."""
        b = features.shape[0]
        z = torch.cat(
            [features.reshape(b, -1), state.reshape(b, -1).float() / self.config.state_scale],
            dim=1,
        )
        return self.head(z).squeeze(1)

    def forward(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """images: B x T x C x H x W x 3 uint8 (T timesteps, history first; C cameras);
        state: B x T x state_dim. Returns B values in [-1, 1]."""
        b, t = images.shape[:2]
        features = self.encode(images.reshape(b * t, *images.shape[2:])).reshape(b, t, -1)
        return self.value(features, state)


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode, its EstimatorConfig, step) from a checkpoint directory."""
    meta = read_meta(path, KIND)
    config = EstimatorConfig(**meta["model"])
    model = AdvantageEstimator(config)
    model.load_state_dict(load_state(path)["model"])
    model.eval()
    return model, config, int(meta["step"])
