"""The CITab network: tabular encoder, image encoder, fusion and heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from citab_cli.core.layers.prototype_mixture import PrototypeMixture, mixture_parameters
from citab_cli.core.layers.resnet3d import ResNet3d, feature_grid
from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.layers.tabular_tokenizer import TabularTokenizer
from citab_cli.core.layers.transformer import Block, FeedForward
from citab_cli.core.model.config import ModelConfig


@dataclass
class TabularOutput:
    """The tabular encoder's output: tokens after the final norm, the keep mask and the P-MoLin
    gates."""

    tokens: torch.Tensor  # (B, 1 + C, D) after the final norm; position 0 is CLS
    keep: torch.Tensor  # (B, 1 + C) bool
    gates: list[torch.Tensor]  # per P-MoLin layer (B, 1 + C, K); [] with dense feed-forwards

    @property
    def cls(self) -> torch.Tensor:
        """The tabular CLS token (B, D)."""
        return self.tokens[:, 0]


@dataclass
class ImageOutput:
    """The image encoder's output: the last feature map, its projected tokens and the pooled
    vector."""

    feature_map: torch.Tensor  # (B, C_img, D', H', W')
    tokens: torch.Tensor  # (B, N, D) projected, with 3D positional embedding
    pooled: torch.Tensor  # (B, C_img)


class TabularEncoder(nn.Module):
    """Header-aware tokens, then pre-norm transformer blocks whose feed-forward is P-MoLin."""

    def __init__(
        self,
        *,
        header_dim: int,
        dim: int,
        layers: int,
        heads: int,
        experts: int,
        expert_ratio: float,
        linear_experts: bool,
        shared_prototypes: bool,
        gate: str,
        gate_temperature: float,
        categorical_as_levels: bool,
        value_init: str = "spread",
        vocabulary_size: int | None = None,
        dense: bool = False,
    ):
        """vocabulary_size: learn column identity (see TabularTokenizer); dense: plain MLP
        feed-forwards with as many parameters as the P-MoLin layers they replace."""
        super().__init__()
        self.tokenizer = TabularTokenizer(
            header_dim=header_dim,
            dim=dim,
            categorical_as_levels=categorical_as_levels,
            value_init=value_init,
            vocabulary_size=vocabulary_size,
        )
        shared = None
        if shared_prototypes and not dense:
            shared = nn.Parameter(torch.randn(experts, dim) / dim**0.5)

        def feed_forward() -> nn.Module:
            if dense:
                count = mixture_parameters(dim, experts, expert_ratio, linear_experts, True)
                return FeedForward(dim, 1.0, hidden=round((count - dim) / (2 * dim + 1)))
            return PrototypeMixture(
                dim=dim,
                experts=experts,
                ratio=expert_ratio,
                linear=linear_experts,
                gate=gate,
                temperature=gate_temperature,
                prototypes=shared,
            )

        self.blocks = nn.ModuleList(Block(dim, heads, feed_forward()) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def encode_cells(self, cells: torch.Tensor, present: torch.Tensor) -> TabularOutput:
        """cells (B, C, D) cell tokens (e.g. scaled for integrated gradients), present (B, C)."""
        x, keep = self.tokenizer.with_cls(cells, present)
        gates = []
        for block in self.blocks:
            x, g = block(x, keep)
            if g is not None:  # a dense feed-forward has no gates
                gates.append(g)
        return TabularOutput(self.norm(x), keep, gates)

    def forward(self, batch: TabularBatch) -> TabularOutput:
        """Cell tokens of `batch`, encoded: (B, C) cells -> TabularOutput."""
        return self.encode_cells(self.tokenizer.cell_tokens(batch), batch.present)


class FusionEncoder(nn.Module):
    """Self-attention over [tab CLS, tab tokens, image tokens]; output 0 is the joint embedding."""

    def __init__(self, *, dim: int, layers: int, heads: int, ffn_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, heads, FeedForward(dim, ffn_ratio)) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, table: TabularOutput, image_tokens: torch.Tensor) -> torch.Tensor:
        """-> (B, D) multimodal embedding."""
        b, n, _ = image_tokens.shape
        x = torch.cat([table.tokens, image_tokens.to(table.tokens.dtype)], dim=1)  # (B, T + N, D)
        keep = torch.cat([table.keep, torch.ones(b, n, dtype=torch.bool, device=x.device)], 1)
        for block in self.blocks:
            x, _ = block(x, keep)
        return self.norm(x[:, 0])


def projection_head(width: int, out: int, norm: str) -> nn.Sequential:
    """Linear, ReLU, Linear from `width` features to `out`; with norm "batchnorm", BatchNorm after
    each Linear (the last one without affine), as SimCLR and MoCo v3 do: it takes away what every
    subject of a batch shares, which otherwise leaves all embeddings at cosine ~0.99 and the ITC
    logits nearly flat."""
    if norm == "none":
        return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))
    return nn.Sequential(
        nn.Linear(width, width, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, out, bias=False),
        nn.BatchNorm1d(out, affine=False),
    )


class CITab(nn.Module):
    """The whole network: tabular encoder, 3D ResNet image encoder, fusion, and the projection and
    matching heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        tab, img = config.tabular, config.image
        self.tabular = TabularEncoder(
            header_dim=config.header_dim,
            dim=tab.dim,
            layers=tab.layers,
            heads=tab.heads,
            experts=tab.experts,
            expert_ratio=tab.expert_ratio,
            linear_experts=tab.linear_experts,
            shared_prototypes=tab.shared_prototypes,
            gate=tab.gate,
            gate_temperature=tab.gate_temperature,
            categorical_as_levels=tab.categorical == "levels",
            value_init=tab.value_init,
            vocabulary_size=len(tab.vocabulary) if tab.column_identity == "learned" else None,
            dense=tab.ffn == "dense",
        )
        self.image = ResNet3d(depth=img.depth, width=img.width)
        channels = self.image.out_channels
        grid = feature_grid(img.shape)
        self.image_grid = grid
        self.image_tokens = nn.Linear(channels, tab.dim)
        self.image_position = nn.Parameter(
            torch.randn(1, grid[0] * grid[1] * grid[2], tab.dim) * 0.02
        )
        self.fusion = FusionEncoder(
            dim=tab.dim,
            layers=config.fusion.layers,
            heads=config.fusion.heads,
            ffn_ratio=config.fusion.ffn_ratio,
        )
        p, norm = config.projection_dim, config.projection_norm
        self.image_projection = projection_head(channels, p, norm)
        self.tabular_projection = projection_head(tab.dim, p, norm)
        self.matching_head = nn.Linear(tab.dim, 2)
        self.numeric_head = nn.Linear(tab.dim, 1)
        # MTR from the CLS: [CLS, the column's meaning] -> the cell's reconstructed token
        self.cell_decoder = nn.Sequential(
            nn.Linear(2 * tab.dim, tab.dim), nn.GELU(), nn.Linear(tab.dim, tab.dim)
        )

    def encode_image(self, images: torch.Tensor) -> ImageOutput:
        """images (B, 1, D, H, W) of the configured shape."""
        if tuple(images.shape[2:]) != tuple(self.config.image.shape):
            raise ValueError(
                f"images of shape {tuple(images.shape[2:])} do not match the "
                f"configured image shape {self.config.image.shape}"
            )
        features = self.image(images)  # (B, C, D', H', W')
        flat = features.flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = self.image_tokens(flat) + self.image_position
        return ImageOutput(features, tokens, features.mean(dim=(2, 3, 4)))

    def encode_tabular(self, batch: TabularBatch) -> TabularOutput:
        """The tabular encoder on `batch`."""
        return self.tabular(batch)

    def embed_cells(
        self, image: ImageOutput, cells: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """Multimodal embedding (B, D) from given cell tokens (B, C, D): for attributions."""
        return self.fuse(self.tabular.encode_cells(cells, present), image)

    def fuse(self, table: TabularOutput, image: ImageOutput) -> torch.Tensor:
        """The multimodal embedding (B, D): fusion over the tabular and image tokens, its CLS."""
        return self.fusion(table, image.tokens)

    def forward(self, images: torch.Tensor, batch: TabularBatch) -> dict[str, torch.Tensor]:
        """Embeddings for downstream use: multimodal CLS, tabular CLS, pooled image (B, *)."""
        image = self.encode_image(images)
        table = self.encode_tabular(batch)
        return {"multimodal": self.fuse(table, image), "tabular": table.cls, "image": image.pooled}


def build_model(config: ModelConfig) -> CITab:
    """The only way a model is made: everything it needs is in `config`."""
    return CITab(config)


def parameter_counts(model: CITab) -> dict[str, int]:
    """Parameters of each part of the model and in total."""

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    fusion = count(model.fusion) + count(model.image_tokens) + model.image_position.numel()
    heads = (
        count(model.image_projection)
        + count(model.tabular_projection)
        + count(model.matching_head)
        + count(model.numeric_head)
        + count(model.cell_decoder)
    )
    return {
        "tabular_encoder": count(model.tabular),
        "image_encoder": count(model.image),
        "fusion": fusion,
        "heads": heads,
        "total": count(model),
    }
