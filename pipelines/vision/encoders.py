"""The image-encoder registry that every model in Flywheel draws its camera encoders from.

An encoder is an ``nn.Module`` class registered by name, ``cls(out_dim)``, mapping
B x 3 x H x W float images in [0, 1] to B x out_dim features. The estimator, the policies, the
reward classifier and the HIL-SERL agent name their encoder in their config, so a checkpoint
records which one it holds and one trained encoder can be frozen and reused by another model.

Every encoder also has ``trunk()``: the module that maps the images to its last spatial
feature map, B x ``trunk_channels`` x h x w, before any pooling, for models that pool it
themselves (the reward classifier's learned spatial embeddings). The trunk shares the
encoder's weights; a model that only uses the trunk registers only the trunk, so that no
parameter goes without a gradient (DDP requires that).

    resnet_small   a compact ResNet, 32-64-128 channels (the estimator's default)
    small_convnet  four strided 3x3 convolutions, 16-32-32-64 channels: the reward classifier's
                   default, sized so that scoring 4 robots' two 128x128 cameras in one batch
                   takes ~2.5 ms on one CPU core (ResNet-10 shape: ~47 ms)
    resnet10       the shape of seed 002's helper2424/resnet10 (LeRobot's and hil-serl's reward
                   classifier and SAC encoder): a 7x7 stride-2 stem and max-pool, then one basic
                   residual block per stage, 64-128-256-512 channels; 4.9 M parameters, for GPU
                   serving. Trained from scratch here: no weights are downloaded.
    spatial_softmax convolutions, then a soft-argmax per keypoint map (image coordinates)
    drqv2          DrQ-v2's encoder (x - 0.5, four 3x3 convolutions, 32 channels, no pooling):
                   the HIL-SERL agent's trainable encoder, flattened as DrQ-v2 does
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


def trunk_of(name: str) -> tuple[nn.Module, int]:
    """(a new encoder `name`'s trunk, its output channels): images to a spatial feature map."""
    encoder = ENCODERS[name](1)
    if not hasattr(encoder, "trunk"):
        raise ValueError(
            f"encoder {name!r} has no spatial feature map: one of {spatial_encoders()}"
        )
    return encoder.trunk(), encoder.trunk_channels


def spatial_encoders() -> list[str]:
    """The registered encoders whose trunk gives a spatial feature map (trunk_of works)."""
    return sorted(n for n, cls in ENCODERS.items() if hasattr(cls, "trunk"))


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


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class _PooledEncoder(nn.Module):
    """A trunk, then global average pooling and a linear layer to `out_dim`."""

    def __init__(self, trunk: nn.Module, channels: int, out_dim: int):
        super().__init__()
        self.body = trunk
        self.trunk_channels = channels
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, out_dim)
        )

    def trunk(self) -> nn.Module:
        return self.body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register_encoder("resnet_small")
class ResNetSmall(nn.Module):
    """A compact ResNet: a strided stem and three residual stages (32-64-128 channels)."""

    def __init__(self, out_dim: int = 128, width: int = 32):
        super().__init__()
        self.trunk_channels = 4 * width
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

    def trunk(self) -> nn.Module:
        return self.net[:-3]

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


@register_encoder("small_convnet")
class SmallConvNet(_PooledEncoder):
    """Four 3x3 stride-2 convolutions with batch norm, 16-32-32-64 channels (1/16 resolution)."""

    def __init__(self, out_dim: int = 128):
        trunk = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, 32, 2), _conv(32, 64, 2))
        super().__init__(trunk, 64, out_dim)


@register_encoder("resnet10")
class ResNet10(_PooledEncoder):
    """ResNet-10: 7x7/2 stem, 3x3/2 max-pool, one basic block per stage, 64-128-256-512."""

    def __init__(self, out_dim: int = 512):
        trunk = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            _Residual(64, 64, 1),
            _Residual(64, 128, 2),
            _Residual(128, 256, 2),
            _Residual(256, 512, 2),
        )
        super().__init__(trunk, 512, out_dim)


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
