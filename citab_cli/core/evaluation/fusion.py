"""Supervised image-table fusion trained from scratch, DAFT-style (Pölsterl et al., 2021): a
fine-tuning baseline that uses the labels, the scan and the table, and no pretraining.

The image encoder is the 3D ResNet of the pretrained model's configuration. Before its last
stage, the feature map is scaled and shifted channel by channel by an affine transform that a
small network computes from the table and the map's own pooled summary (the dynamic affine
feature-map transform); after the last stage, the pooled map and the table go to a linear head.
DAFT places the transform inside the last residual block; here it sits at the last stage's
input, so the encoder stays exactly CITab's.

The table is read as a fixed-width vector per subject, which one cohort's slots give: each
column's normalised value, whether it is missing, and its level one-hot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from citab_cli.core.layers.resnet3d import ResNet3d
from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.model.config import ImageConfig
from citab_cli.core.precision import full_precision

#: Width of the network that computes the affine transform (DAFT's bottleneck).
BOTTLENECK = 32


def table_vector(batch: TabularBatch, levels: int) -> torch.Tensor:
    """(B, C * (2 + levels)): per slot the normalised value (0 where missing or categorical),
    a missing flag and the level one-hot (zeros for numeric, missing or padded cells)."""
    b, c = batch.values.shape
    index = batch.level_index if batch.level_index is not None else torch.full((b, c), -1)
    index = index.to(batch.values.device)
    known = batch.categorical & (index >= 0) & (index < levels) & batch.present
    one_hot = F.one_hot(index.clamp(0, max(levels - 1, 0)), max(levels, 1)).float()
    one_hot = one_hot * known[..., None]
    values = torch.where(batch.present & ~batch.missing & ~batch.categorical, batch.values, 0.0)
    flags = (batch.missing & batch.present).float()
    return torch.cat([values[..., None], flags[..., None], one_hot[..., :levels]], -1).flatten(1)


class DaftBackbone(nn.Module):
    """The 3D ResNet with the table-conditioned affine transform at its last stage's input."""

    def __init__(self, image: ImageConfig, table_width: int):
        super().__init__()
        self.image = ResNet3d(depth=image.depth, width=image.width)
        channels = self.image.out_channels // 2  # the last stage doubles the channels
        self.condition = nn.Sequential(
            nn.Linear(channels + table_width, BOTTLENECK),
            nn.ReLU(inplace=True),
            nn.Linear(BOTTLENECK, 2 * channels),
        )
        nn.init.zeros_(self.condition[-1].weight)  # the transform starts as the identity
        nn.init.zeros_(self.condition[-1].bias)
        self.out_channels = self.image.out_channels

    def forward(self, images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """images (B, 1, D, H, W), table (B, T) -> pooled features (B, out_channels)."""
        x = self.image.stages[:3](self.image.stem(images))
        summary = torch.cat([x.mean((2, 3, 4)), table.to(x.dtype)], 1)
        scale, shift = self.condition(summary).chunk(2, dim=1)
        x = x * (1 + scale[..., None, None, None]) + shift[..., None, None, None]
        return self.image.stages[3](x).mean((2, 3, 4))


class DaftClassifier(nn.Module):
    """DAFT-style fusion with a linear diagnosis head on the pooled image features and the
    table; `backbone` and `head` as `Classifier` names them, so it trains the same way."""

    def __init__(self, image: ImageConfig, columns: int, levels: int, classes: int):
        super().__init__()
        self.levels = levels
        width = columns * (2 + levels)
        self.backbone = DaftBackbone(image, width)
        self.head = nn.Linear(self.backbone.out_channels + width, classes)

    def forward(self, images: torch.Tensor, table: TabularBatch) -> torch.Tensor:
        """-> logits (B, classes)."""
        vector = table_vector(table, self.levels)
        features = torch.cat([self.backbone(images, vector).float(), vector], 1)
        with full_precision(features):  # class scores in float32, also under bf16 autocast
            return self.head(features)
