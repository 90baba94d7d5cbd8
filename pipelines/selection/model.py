"""The learned selector: P(approve | state, candidate), and the scorer `collect` draws with.

`ApprovalModel`: each camera through an encoder of the shared registry
(`pipelines.vision.encoders`),
the features concatenated with the normalized joint state and the candidate as a normalized
displacement from the state (candidate - state: what the action does, the same for every
state), then an MLP to one logit. Trained by `flywheel train-selector`
(`pipelines.selection.training`) on the logged critical
attempts (approved 1, rejected 0), with the same statistics for every worker.

`ApprovalScorer(checkpoint)` is the `learned` selector's scorer: for the n candidates at a
state it returns the n logits of P(approve), so the selector's softmax(logit / T) favours the
candidates the admin is likely to approve. Images are encoded once per state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from pipelines.dataset import DatasetError
from pipelines.runtime.checkpoints import load_state, read_meta
from pipelines.selection.config import KIND
from pipelines.vision.encoders import ENCODERS
from pipelines.vision.images import resize


@dataclass
class ApprovalConfig:
    cameras: list[str] = field(default_factory=lambda: ["observation.images.front"])
    state_dim: int = 6
    action_dim: int = 6
    image_size: int = 32
    encoder: str = "small_convnet"
    feature_dim: int = 32
    hidden: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


class ApprovalModel(nn.Module):
    def __init__(self, config: ApprovalConfig):
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleList(
            [ENCODERS[config.encoder](config.feature_dim) for _ in config.cameras]
        )
        n_in = len(config.cameras) * config.feature_dim + config.state_dim + config.action_dim
        self.head = nn.Sequential(
            nn.Linear(n_in, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )
        for name in ("state_mean", "state_std", "delta_mean", "delta_std"):
            dim = config.state_dim if name.startswith("state") else config.action_dim
            self.register_buffer(name, torch.zeros(dim) if "mean" in name else torch.ones(dim))

    def set_normalization(self, stats: dict) -> None:
        for name in ("state_mean", "state_std", "delta_mean", "delta_std"):
            getattr(self, name).copy_(torch.as_tensor(stats[name], dtype=torch.float32))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """B x C x S x S x 3 uint8 -> B x (C * feature_dim)."""
        x = images.float().permute(0, 1, 4, 2, 3) / 255.0
        return torch.cat([enc(x[:, i]) for i, enc in enumerate(self.encoders)], dim=1)

    def logits_from_features(
        self, features: torch.Tensor, state: torch.Tensor, candidate: torch.Tensor
    ) -> torch.Tensor:
        s = (state.float() - self.state_mean) / self.state_std
        d = (candidate.float() - state.float() - self.delta_mean) / self.delta_std
        return self.head(torch.cat([features, s, d], dim=1))[:, 0]

    def forward(self, images, state, candidate) -> torch.Tensor:
        return self.logits_from_features(self.encode(images), state, candidate)


def normalization_stats(state: np.ndarray, action: np.ndarray) -> dict:
    delta = action - state
    return {
        "state_mean": state.mean(0).tolist(),
        "state_std": np.maximum(state.std(0), 1e-3).tolist(),
        "delta_mean": delta.mean(0).tolist(),
        "delta_std": np.maximum(delta.std(0), 1e-3).tolist(),
    }


def resize_frames(obs: dict, cameras: list[str], size: int) -> np.ndarray:
    return np.stack([resize(obs[k], size) for k in cameras])[None]


class ApprovalScorer:
    """The `learned` selector's scorer from a train-selector checkpoint (module docstring)."""

    def __init__(self, path):
        meta = read_meta(path, KIND)
        self.config = ApprovalConfig(**meta["model"])
        self.model = ApprovalModel(self.config)
        self.model.load_state_dict(load_state(path)["model"])
        self.model.eval()

    def check(self, env) -> None:
        obs = env.observation_space
        missing = [k for k in self.config.cameras if k not in obs.spaces]
        if missing:
            raise DatasetError(f"selector checkpoint: camera {missing[0]!r} not in the simulator")

    @torch.no_grad()
    def __call__(self, obs: dict, candidates: np.ndarray) -> np.ndarray:
        cfg = self.config
        images = torch.from_numpy(resize_frames(obs, cfg.cameras, cfg.image_size))
        features = self.model.encode(images)
        n = len(candidates)
        state = torch.as_tensor(obs["observation.state"], dtype=torch.float32)[None].repeat(n, 1)
        logits = self.model.logits_from_features(
            features.repeat(n, 1), state, torch.as_tensor(candidates, dtype=torch.float32)
        )
        return logits.numpy().astype(np.float64)
