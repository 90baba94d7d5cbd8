"""The advantage estimator: image encoders, robot state and a value head (plain PyTorch).

Two progress variants, as in the stage-advantage reference, learn from `stage_progress_gt`:

* ``kai0``: two timesteps. Given a history frame h and a current frame c of one episode, it
  predicts clamp(stage_progress_gt[c] - stage_progress_gt[h], -1, 1).
* ``pi06``: the current frame only. It predicts stage_progress_gt[c] (the progress made since
  the start of the episode, i.e. the kai0 target with the history at progress 0).

Every camera image goes through one shared encoder (a compact ResNet by default; any encoder of
the registry in ``pipelines.vision.encoders``); the features of every camera and timestep are
concatenated with the robot state and fed to the reference's value head
Linear-SiLU-Linear-SiLU-Linear-Tanh.

The third variant, ``recap``, is RECAP's distributional value of the current frame, learned
from episode outcomes (`pipelines.estimator.value`): the same encoder on every camera, the
robot state normalized with the dataset's mean and std (buffers of the model, saved with it)
and the frame's task text through the prompt encoder (`pipelines.vision.prompts`, so that
several tasks share one model) go into the same head, which ends in `bins` logits; V is their
expectation over [-1, 0].
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pipelines.estimator.config import KIND, VARIANTS
from pipelines.estimator.value import BINS, expected_value
from pipelines.runtime.checkpoints import load_state, read_meta
from pipelines.vision.encoders import ENCODERS
from pipelines.vision.prompts import PromptEncoder


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
    bins: int = BINS  # recap: the value's bins over [-1, 0]
    prompt_vocab: int = 4096  # recap: hashed word ids of the task text
    prompt_dim: int = 32  # recap: the task text's embedding

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r}: one of {VARIANTS}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r}: one of {sorted(ENCODERS)}")

    @property
    def timesteps(self) -> int:
        return 2 if self.variant == "kai0" else 1

    @property
    def distributional(self) -> bool:
        """The recap value: logits over bins, the task text and a normalized state."""
        return self.variant == "recap"

    def to_dict(self) -> dict:
        return asdict(self)


class AdvantageEstimator(nn.Module):
    """value = head([enc(image) for each timestep and camera] + [state for each timestep]
    (+ [the task text's embedding], recap))."""

    def __init__(self, config: EstimatorConfig):
        super().__init__()
        self.config = config
        self.encoder = ENCODERS[config.encoder](config.feature_dim)
        n_in = config.timesteps * (len(config.cameras) * config.feature_dim + config.state_dim)
        if config.distributional:
            self.prompt = PromptEncoder(config.prompt_vocab, config.prompt_dim)
            n_in += config.prompt_dim
            self.register_buffer("state_mean", torch.zeros(config.state_dim))
            self.register_buffer("state_std", torch.ones(config.state_dim))
        out = [nn.Linear(config.hidden_dim, config.bins)]
        self.head = nn.Sequential(
            nn.Linear(n_in, config.hidden_dim),
            nn.SiLU(),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.SiLU(),
            *(out if config.distributional else [nn.Linear(config.hidden_dim, 1), nn.Tanh()]),
        )

    def set_state_normalization(self, mean, std) -> None:
        """recap: the state's mean and std (D each, the dataset's units)."""
        self.state_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.state_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features of frames: N x C x H x W x 3 uint8 (C cameras) -> N x (C * feature_dim)."""
        n, c, h, w, _ = images.shape
        x = images.reshape(n * c, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        return self.encoder(x).reshape(n, c * self.config.feature_dim)

    def value_logits(
        self, features: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """recap: B x bins logits from features B x 1 x F, raw state B x 1 x D and the task
        texts' word ids B x L."""
        b = features.shape[0]
        normalized = (state.reshape(b, -1).float() - self.state_mean) / self.state_std
        z = torch.cat([features.reshape(b, -1), normalized, self.prompt(tokens)], dim=1)
        return self.head(z)

    def value(
        self, features: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The head on encoded frames: features B x T x (C * feature_dim), state B x T x D
        (recap: and the task texts' word ids B x L); B values."""
        if self.config.distributional:
            return expected_value(self.value_logits(features, state, tokens))
        b = features.shape[0]
        z = torch.cat(
            [features.reshape(b, -1), state.reshape(b, -1).float() / self.config.state_scale],
            dim=1,
        )
        return self.head(z).squeeze(1)

    def forward(
        self,
        images: torch.Tensor,
        state: torch.Tensor,
        tokens: torch.Tensor | None = None,
        logits: bool = False,
    ) -> torch.Tensor:
        """images: B x T x C x H x W x 3 uint8 (T timesteps, history first; C cameras);
        state: B x T x state_dim; tokens (recap): B x L word ids. Returns B values (kai0, pi06:
        in [-1, 1]; recap: in [-1, 0]), or with `logits` (recap) the B x bins logits."""
        b, t = images.shape[:2]
        features = self.encode(images.reshape(b * t, *images.shape[2:])).reshape(b, t, -1)
        if logits:
            return self.value_logits(features, state, tokens)
        return self.value(features, state, tokens)


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode, its EstimatorConfig, step) from a checkpoint directory."""
    meta = read_meta(path, KIND)
    config = EstimatorConfig(**meta["model"])
    model = AdvantageEstimator(config)
    model.load_state_dict(load_state(path)["model"])
    model.eval()
    return model, config, int(meta["step"])
