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


@register_encoder("spatial_softmax")
class SpatialSoftmaxEncoder(nn.Module):
    """Where things are: four plain convolutions, then a spatial soft-argmax per keypoint map.

    Each of `keypoints` maps becomes the expected (x, y) of its softmax over the image (with a
    learned temperature), so the features are image coordinates: what a policy that must put
    its gripper on an object needs, and what global average pooling throws away. Output:
    Linear(2 * keypoints -> out_dim). At 64 x 64 the maps are 16 x 16.
    """

    def __init__(self, out_dim: int = 64, width: int = 32, keypoints: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, keypoints, 1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.out = nn.Linear(2 * keypoints, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.net(x - 0.5)
        b, k, h, w = maps.shape
        attention = torch.softmax(maps.reshape(b, k, h * w) / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=maps.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack(
            [attention @ grid_x.reshape(-1), attention @ grid_y.reshape(-1)], dim=-1
        )
        return self.out(points.reshape(b, 2 * k))
