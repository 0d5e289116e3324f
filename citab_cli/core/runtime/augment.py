"""Image augmentation, batched in torch on the training device.

Every random choice for a sample is drawn from a generator seeded by (seed, epoch, subject), so a
resumed run, or another device, augments each subject exactly as before.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from citab_cli.core.runtime.device import to_device


class AugmentConfig(BaseModel):
    """How much each augmentation may change a scan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    rotate_degrees: float = Field(10.0, ge=0)
    scale: float = Field(0.1, ge=0, lt=1, description="zoom of up to +- this fraction")
    shift: float = Field(
        0.05, ge=0, lt=1, description="shift of up to +- this fraction of the field"
    )
    gamma: float = Field(0.3, ge=0, lt=1, description="gamma in [1 - g, 1 + g]")
    noise: float = Field(0.05, ge=0, description="Gaussian noise sd (images are z-scored)")


def _rotation(angles: np.ndarray) -> np.ndarray:
    """(3,) radians about the three axes -> (3, 3)."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


#: The stream of a second, independent augmentation of the same subject and epoch (SimCLR).
SECOND_VIEW = 2


def sample_parameters(
    config: AugmentConfig, seed: int, epoch: int, subjects: np.ndarray, stream: int = 0
) -> dict:
    """Per-sample augmentation parameters; subjects (B,) stable subject ids; another `stream`
    draws another augmentation of the same subjects (stream 0 is the usual one)."""
    thetas, flips, gammas, noise_seeds = [], [], [], []
    for subject in subjects:
        key = [seed, epoch, int(subject)] + ([stream] if stream else [])
        rng = np.random.default_rng(key)
        angles = np.radians(rng.uniform(-config.rotate_degrees, config.rotate_degrees, 3))
        zoom = rng.uniform(1 - config.scale, 1 + config.scale)
        shift = rng.uniform(-config.shift, config.shift, 3) * 2  # normalised coordinates span 2
        theta = np.concatenate([_rotation(angles) / zoom, shift[:, None]], axis=1)  # (3, 4)
        thetas.append(theta)
        flips.append(rng.random() < config.flip)
        gammas.append(rng.uniform(1 - config.gamma, 1 + config.gamma))
        noise_seeds.append(int(rng.integers(0, 2**62)))
    return {
        "theta": np.array(thetas, np.float32),
        "flip": np.array(flips),
        "gamma": np.array(gammas, np.float32),
        "noise_seed": noise_seeds,
    }


def augment(images: torch.Tensor, params: dict, config: AugmentConfig) -> torch.Tensor:
    """images (B, 1, D, H, W) on any device -> augmented copy, same shape and dtype."""
    device, dtype = images.device, images.dtype
    x = images.float()
    flip = to_device(params["flip"], device)[:, None, None, None, None]
    x = torch.where(flip, x.flip(2), x)  # axis 2 is left-right (RAS)
    # affine_grid works in (x, y, z) = (W, H, D) order; our theta is in (D, H, W) order: the
    # rows reversed, and the first three columns reversed (the shift column stays last).
    theta = to_device(params["theta"], device).flip(1)  # (B, 3, 4)
    theta = torch.cat([theta[:, :, :3].flip(2), theta[:, :, 3:]], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    low = x.amin(dim=(1, 2, 3, 4), keepdim=True)
    high = x.amax(dim=(1, 2, 3, 4), keepdim=True)
    span = (high - low).clamp_min(1e-6)
    gamma = to_device(params["gamma"], device)[:, None, None, None, None]
    x = ((x - low) / span).clamp_min(0) ** gamma * span + low
    if config.noise > 0:
        noise = torch.stack(
            [
                torch.randn(
                    x.shape[1:],
                    device=device,
                    generator=torch.Generator(device=device).manual_seed(s),
                )
                for s in params["noise_seed"]
            ]
        )
        x = x + config.noise * noise
    return x.to(dtype)


def second_view(
    images: torch.Tensor, config: AugmentConfig, seed: int, epoch: int, subjects: np.ndarray
) -> torch.Tensor:
    """Another augmentation of the same scans, SimCLR's second view: its own draws from the
    same seed, epoch and subjects."""
    return augment(images, sample_parameters(config, seed, epoch, subjects, SECOND_VIEW), config)
