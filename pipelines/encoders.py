"""The image-encoder registry that every model in Flywheel draws its camera encoders from.

An encoder is an ``nn.Module`` class registered by name, ``cls(out_dim)``, mapping
B x 3 x H x W float images in [0, 1] to B x out_dim features. The estimator, the policies, the
reward classifier and the HIL-SERL agent name their encoder in their config, so a checkpoint
records which one it holds and one trained encoder can be frozen and reused by another model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ENCODERS: dict[str, Callable[[int], nn.Module]] = {}


def register_encoder(name: str):
    """Register an image encoder class: ``cls(out_dim)`` maps B x 3 x H x W to B x out_dim."""

    def add(cls):
        ENCODERS[name] = cls
        return cls

    return add


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


@register_encoder("resnet_small")
class ResNetSmall(nn.Module):
    """A compact ResNet: a strided stem and three residual stages (32-64-128 channels)."""

    def __init__(self, out_dim: int = 128, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 5, 2, 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            _Residual(width, width, 2),
            _Residual(width, 2 * width, 2),
            _Residual(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _DrQV2Trunk(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x - 0.5)


@register_encoder("drqv2")
class DrQV2Encoder(nn.Module):
    """DrQ-v2's encoder: x - 0.5, a 3x3 stride-2 convolution, three 3x3 stride-1, 32 channels,
    ReLU, no padding. `trunk()` is the convolutions (B x 32 x h x w, h = (size - 3) // 2 - 5):
    the HIL-SERL agent flattens it, as DrQ-v2 does; `forward` adds a linear layer to `out_dim`
    for the registry's contract. `in_channels` is 3 x the frames stacked."""

    def __init__(self, out_dim: int = 50, in_channels: int = 3, image_size: int = 64, width=32):
        super().__init__()
        self.trunk_channels = width
        self.body = _DrQV2Trunk(in_channels, width)
        side = (image_size - 3) // 2 + 1 - 6
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, out_dim))

    def trunk(self) -> nn.Module:
        return self.body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
