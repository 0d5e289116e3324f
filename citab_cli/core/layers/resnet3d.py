"""3D ResNet (10/18/34/50) for one-channel volumes, with a width multiplier.

Stem: 7x7x7 convolution, stride (1, 2, 2), then 3x3x3 max-pool, stride 2; four stages with
strides 1, 2, 2, 2. A 160x208x176 volume gives a 10x7x6 feature map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Blocks per stage and block type for each depth.
LAYOUTS = {
    10: ([1, 1, 1, 1], False),
    18: ([2, 2, 2, 2], False),
    34: ([3, 4, 6, 3], False),
    50: ([3, 4, 6, 3], True),
}


class BasicBlock(nn.Module):
    """Two 3x3x3 convolutions with a shortcut (ResNet-10/18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv3d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, D, H, W) -> (B, width, D', H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1x1, 3x3x3, 1x1x1 convolutions with a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv3d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, D, H, W) -> (B, 4 * width, D', H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))


class ResNet3d(nn.Module):
    """A 3D ResNet of depth 10/18/34/50 for one-channel volumes: stem, four stages, feature map."""

    def __init__(self, depth: int, width: int, in_channels: int = 1):
        super().__init__()
        if depth not in LAYOUTS:
            raise ValueError(f"depth must be one of {sorted(LAYOUTS)}")
        blocks, bottleneck = LAYOUTS[depth]
        block = Bottleneck if bottleneck else BasicBlock
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, width, 7, stride=(1, 2, 2), padding=3, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        stages = []
        cin = width
        for i, count in enumerate(blocks):
            stage_width = width * 2**i
            layers = []
            for j in range(count):
                layers.append(block(cin, stage_width, 2 if (i > 0 and j == 0) else 1))
                cin = stage_width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, D, H, W) -> feature map (B, C, D', H', W')."""
        return self.stages(self.stem(x))


def feature_grid(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(D', H', W') of the feature map for an input of `shape`."""
    return stage_grid(shape, 3)


def stage_grid(shape: tuple[int, int, int], stage: int) -> tuple[int, int, int]:
    """(D', H', W') of the output of stage `stage` (0..3) for an input of `shape`."""
    d, h, w = shape
    d, h, w = d, math.ceil(h / 2), math.ceil(w / 2)  # stem convolution, stride (1, 2, 2)
    for _ in range(stage + 1):  # max-pool, then `stage` strided stages
        d, h, w = math.ceil(d / 2), math.ceil(h / 2), math.ceil(w / 2)
    return d, h, w
