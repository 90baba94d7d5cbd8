"""The action-chunk policy: cameras, robot state and a prompt in, a chunk of actions out.

* **Cameras**: each camera has its own image encoder from the shared registry
  (`pipelines.vision.encoders`; `spatial_softmax` by default: the policy must put its jaws on a
  2.5 cm cube, so it needs image coordinates, which global pooling loses). Images are resized
  to `image_size` before they reach the model.
* **State**: `observation.state`, normalized with the dataset's mean and std (buffers of the
  model, saved with it).
* **Prompt**: the frame's prompt text (`tasks[task_index]`, e.g. "reach and grasp the red cube,
  Advantage: positive") is split into lowercase words, each word hashed (BLAKE2b, stable across
  processes and machines, unlike Python's `hash`) into a fixed vocabulary, and the words'
  embeddings averaged by an `EmbeddingBag`. Several tasks share one model, and a text never
  seen still encodes. The prompt vector modulates the trunk (FiLM: a per-unit scale and shift),
  so the label can change what the policy does, not merely add a constant.
* **Output**: `chunk_size` actions (10 = 1 s at 10 fps, LeRobot's delta-timestamp convention),
  normalized with the dataset's action statistics. With `action_frame="relative"` (the default)
  the chunk is predicted relative to the current state (action - state): the same joint motion
  then means the same target wherever the arm is, which a small network learns much faster than
  absolute joint angles; `"absolute"` predicts the recorded actions themselves.

Inference is deterministic (no sampling): `predict` returns the chunk in the dataset's units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pipelines.vision.encoders import ENCODERS
from pipelines.vision.prompts import PromptEncoder, prompt_words, tokenize, word_id  # noqa: F401

ACTION_FRAMES = ("relative", "absolute")


@dataclass
class PolicyConfig:
    cameras: list[str] = field(default_factory=list)  # image feature keys, in order
    state_dim: int = 6
    action_dim: int = 6
    chunk_size: int = 10
    image_size: int = 64
    encoder: str = "spatial_softmax"
    feature_dim: int = 64
    hidden_dim: int = 256
    prompt_vocab: int = 4096
    prompt_dim: int = 32
    action_frame: str = "relative"

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r}: one of {sorted(ENCODERS)}")
        if self.action_frame not in ACTION_FRAMES:
            raise ValueError(f"action_frame {self.action_frame!r}: one of {ACTION_FRAMES}")

    def to_dict(self) -> dict:
        return asdict(self)


class ChunkPolicy(nn.Module):
    """Normalized action chunk = trunk(cameras, normalized state) modulated by the prompt."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoders = nn.ModuleList(ENCODERS[c.encoder](c.feature_dim) for _ in c.cameras)
        self.prompt = PromptEncoder(c.prompt_vocab, c.prompt_dim)
        n_in = len(c.cameras) * c.feature_dim + c.state_dim
        self.inp = nn.Sequential(nn.Linear(n_in, c.hidden_dim), nn.LayerNorm(c.hidden_dim))
        self.film = nn.Linear(c.prompt_dim, 2 * c.hidden_dim)
        self.head = nn.Sequential(
            nn.GELU(),
            nn.Linear(c.hidden_dim, c.hidden_dim),
            nn.GELU(),
            nn.Linear(c.hidden_dim, c.chunk_size * c.action_dim),
        )
        self.register_buffer("state_mean", torch.zeros(c.state_dim))
        self.register_buffer("state_std", torch.ones(c.state_dim))
        self.register_buffer("action_mean", torch.zeros(c.chunk_size, c.action_dim))
        self.register_buffer("action_std", torch.ones(c.chunk_size, c.action_dim))

    def set_normalization(self, stats: dict) -> None:
        """stats: {"state": {"mean", "std"}: D, "action": {"mean", "std"}: H x A} (lists)."""
        for name in ("state", "action"):
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(stats[name]["mean"]))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(stats[name]["std"]))

    # ------------------------------------------------------------------------------ parts
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x C x S x S x 3 uint8 (C cameras) -> B x (C * feature_dim)."""
        x = images.permute(0, 1, 4, 2, 3).float().div_(255.0)
        return torch.cat([enc(x[:, i]) for i, enc in enumerate(self.encoders)], dim=1)

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (state.float() - self.state_mean) / self.state_std

    def head_from_features(
        self, features: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Normalized chunk B x H x A from encoded images, raw state and prompt word ids."""
        h = self.inp(torch.cat([features, self.normalize_state(state)], dim=1))
        scale, shift = self.film(self.prompt(tokens)).chunk(2, dim=1)
        out = self.head(h * (1.0 + scale) + shift)
        return out.reshape(-1, self.config.chunk_size, self.config.action_dim)

    def forward(
        self, images: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        return self.head_from_features(self.encode(images), state, tokens)

    # ------------------------------------------------------------------------------ units
    def normalize_chunk(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Recorded actions B x H x A (dataset units) -> the normalized training target."""
        if self.config.action_frame == "relative":
            actions = actions - state[:, None, :].float()
        return (actions - self.action_mean) / self.action_std

    def denormalize_chunk(self, chunk: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        actions = chunk * self.action_std + self.action_mean
        if self.config.action_frame == "relative":
            actions = actions + state[:, None, :].float()
        return actions

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """The action chunk in dataset units (B x H x A), deterministically."""
        return self.denormalize_chunk(self(images, state, tokens), state)
