"""Model configuration: strict, round-tripping, and the named presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citab_cli.core.errors import CitabError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TabularConfig(_Strict):
    """Tabular encoder: header-aware tokens, then pre-norm transformer blocks with P-MoLin."""

    dim: int = Field(512, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(8, ge=1)
    experts: int = Field(5, ge=1, description="K: prototypes and experts per P-MoLin layer")
    expert_ratio: float = Field(1.75, gt=0, description="hidden width of an expert / dim")
    linear_experts: bool = False
    shared_prototypes: bool = False
    gate: Literal["dot", "cosine"] = "dot"
    gate_temperature: float = Field(1.0, gt=0)
    categorical: Literal["levels", "numeric"] = Field(
        "levels", description="levels: a level's own header text; numeric: the paper's behaviour"
    )
    prototype_balance: float = Field(0.0, ge=0, description="weight of the balance regulariser")
    column_identity: Literal["header", "learned"] = Field(
        "header",
        description="what tells the model which column a cell is: header (the embedding of the "
        "column's description, CITab's idea) or learned (a trained vector per column name, as "
        "TIP does; a column of one name shares it across cohorts; header vectors are ignored)",
    )
    vocabulary: list[str] = Field(
        [],
        description="with column_identity learned: the column names (and 'name: level' for "
        "each level) that have their own vector, filled from the pretraining cohorts; other "
        "names share one 'unknown' vector",
    )
    ffn: Literal["pmolin", "dense"] = Field(
        "pmolin",
        description="feed-forward of the tabular blocks: pmolin (prototype-guided mixture, "
        "CITab's idea) or dense (one plain MLP with the same number of parameters)",
    )
    value_init: Literal["spread", "identity"] = Field(
        "spread",
        description="start of w, b in (w z + b) * A(h): spread (b = 1, w random: the value turns "
        "the token, which survives LayerNorm) or identity (w = 1, b = 0: the value only scales "
        "the token, which LayerNorm undoes)",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TabularConfig:
        if self.dim % self.heads:
            raise ValueError("tabular.dim must be a multiple of tabular.heads")
        if self.ffn == "dense" and self.prototype_balance > 0:
            raise ValueError("tabular.prototype_balance needs tabular.ffn: pmolin (dense has none)")
        return self


class ImageConfig(_Strict):
    """3D ResNet image encoder."""

    depth: Literal[10, 18, 34, 50] = 50
    width: int = Field(64, ge=4, description="channels of the stem; stages use 1, 2, 4, 8 x")
    shape: tuple[int, int, int] = (160, 208, 176)


class FusionConfig(_Strict):
    """The fusion encoder: layers, heads, feed-forward ratio."""

    layers: int = Field(4, ge=1)
    heads: int = Field(8, ge=1)
    ffn_ratio: float = Field(4.0, gt=0)


class LossConfig(_Strict):
    """loss = (ITC + itm_weight * ITM) / 2 + mtr_weight * MTR."""

    objective: Literal["citab", "scarf", "simclr"] = Field(
        "citab",
        description="citab: image-table contrast, matching and masked reconstruction; scarf: "
        "tabular-only self-supervision by feature corruption (a baseline that never reads the "
        "scan); simclr: image-only contrast of two augmentations of each scan (a baseline that "
        "never reads the table); the baselines' temperature is itc_temperature",
    )
    scarf_corruption: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="with objective scarf: share of a row's cells replaced by another row's of "
        "its cohort (SCARF's default)",
    )
    itc_temperature: float = Field(0.1, gt=0)
    itc_same_cohort: bool = Field(
        True,
        description="ITC negatives only from the same cohort (another cohort's table or scan is "
        "told apart by its columns or scanner, which teaches the cohort, not the subject; the "
        "released code: false); needs queue_size 0",
    )
    itm_weight: float = Field(1.0, ge=0, description="0 turns image-table matching off")
    itm_hardness: float = Field(
        0.1,
        ge=0,
        description="how hard ITM negatives are: the ITC logits are scaled by it before the "
        "softmax that draws them (1: the most similar most often, as the released code; 0: "
        "uniformly among the candidates: the subject's own cohort when itc_same_cohort or "
        "itm_same_cohort is on, else the batch); 0.1 learned to match best (docs/results.md, "
        "section 2)",
    )
    itm_same_cohort: bool = Field(
        False, description="draw ITM hard negatives within the same cohort when the batch allows"
    )
    mtr_weight: float = Field(
        1.0,
        ge=0,
        description="weight of masked tabular reconstruction (the released code: 0); with it "
        "the tabular CLS keeps what only the table knows (docs/results.md, section 2)",
    )
    mtr_mask_fraction: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="share of a row's observed cells masked for MTR; 0.5 (was 0.15, as BERT): "
        "the tabular CLS must carry more of the row, and pretraining leaves its first plateau "
        "reliably (docs/results.md, section 1)",
    )
    mtr_source: Literal["cls", "cell"] = Field(
        "cls",
        description="cls: masked cells are rebuilt from the tabular CLS and the column's "
        "meaning, so the CLS must carry the row; cell: from the masked cell's own output token",
    )
    queue_size: int = Field(
        0, ge=0, description="past momentum features kept as extra ITC negatives; 0: none"
    )
    momentum: float = Field(0.995, ge=0, lt=1, description="EMA rate of the momentum encoders")

    @model_validator(mode="after")
    def _queue_has_no_cohorts(self) -> LossConfig:
        if self.itc_same_cohort and self.queue_size:
            raise ValueError(
                "loss.queue_size needs loss.itc_same_cohort: false (the queue keeps no cohorts)"
            )
        return self


class ModelConfig(_Strict):
    """The whole network and its objective: header size, projections, tabular, image, fusion,
    loss."""

    header_dim: int = Field(384, ge=1, description="dimension of the header embeddings")
    projection_dim: int = Field(128, ge=1)
    projection_norm: Literal["none", "batchnorm"] = Field(
        "none",
        description="normalisation in the ITC projection heads: batchnorm (BatchNorm after "
        "each layer, the presets' choice) or none (as the released code; runs written before "
        "this setting existed read as none)",
    )
    tabular: TabularConfig = TabularConfig()
    image: ImageConfig = ImageConfig()
    fusion: FusionConfig = FusionConfig()
    loss: LossConfig = LossConfig()

    @model_validator(mode="after")
    def _fusion_heads_divide(self) -> ModelConfig:
        if self.tabular.dim % self.fusion.heads:
            raise ValueError("tabular.dim (the fusion width) must be a multiple of fusion.heads")
        return self


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        projection_dim=16,
        tabular=TabularConfig(dim=32, layers=1, heads=4, experts=3),
        image=ImageConfig(depth=10, width=8, shape=(24, 24, 24)),
        fusion=FusionConfig(layers=1, heads=4, ffn_ratio=2.0),
    ),
    "small": ModelConfig(
        projection_dim=64,
        tabular=TabularConfig(dim=128, layers=2, heads=8, experts=4),
        image=ImageConfig(depth=10, width=16, shape=(48, 48, 48)),
        fusion=FusionConfig(layers=2, heads=8, ffn_ratio=4.0),
    ),
    "paper": ModelConfig(
        projection_dim=128,
        tabular=TabularConfig(dim=512, layers=4, heads=8, experts=5, expert_ratio=1.75),
        image=ImageConfig(depth=50, width=64, shape=(160, 208, 176)),
        fusion=FusionConfig(layers=4, heads=8, ffn_ratio=4.0),
    ),
}


def preset(name: str) -> ModelConfig:
    """The network of preset `name`."""
    if name not in PRESETS:
        raise CitabError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
