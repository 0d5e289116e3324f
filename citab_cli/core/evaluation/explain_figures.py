"""The pictures of `citab explain`: column attributions, prototype routing, Grad-CAM overlays,
and Grad-CAM maps as NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core.evaluation.report import pyplot

#: Bars in the column attribution chart.
SHOWN_COLUMNS = 20
#: Grad-CAM values below this are left transparent so the anatomy stays visible.
CAM_FLOOR = 0.25


def bar_chart(path: Path, ranking: list[tuple[str, float]], cohort: str) -> None:
    plt = pyplot()
    shown = ranking[:SHOWN_COLUMNS][::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(shown) + 1.2))
    ax.barh([t for t, _ in shown], [v for _, v in shown], color="tab:blue")
    ax.set_xlabel("mean |integrated gradient| on the predicted class")
    ax.set_title(f"{cohort}: columns by header text")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def heatmap(path: Path, routing: dict) -> None:
    plt = pyplot()
    matrix = routing["matrix"]
    r, layers, k = matrix.shape
    flat = matrix.reshape(r, layers * k)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * layers * k, 0.28 * r + 1.5))
    image = ax.imshow(flat, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(r), routing["labels"], fontsize=7)
    ax.set_xticks(
        range(layers * k),
        [f"L{layer + 1}P{p + 1}" for layer in range(layers) for p in range(k)],
        fontsize=7,
        rotation=90,
    )
    ax.set_title("mean P-MoLin gate\n(L layer, P prototype)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_nifti(path: Path, volume: np.ndarray, spacing) -> None:
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.array(volume.shape) / 2 * np.array(spacing)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), path)


def overlay(path: Path, image: np.ndarray, cam: np.ndarray, title: str) -> None:
    plt = pyplot()
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    views = [
        (image[peak[0]], cam[peak[0]], "sagittal"),
        (image[:, peak[1]], cam[:, peak[1]], "coronal"),
        (image[:, :, peak[2]], cam[:, :, peak[2]], "axial"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, (slice_image, slice_cam, name) in zip(axes, views, strict=True):
        ax.imshow(slice_image.T, cmap="gray", origin="lower")
        shown = np.ma.masked_where(slice_cam.T < CAM_FLOOR, slice_cam.T)
        ax.imshow(shown, cmap="hot", alpha=0.5, origin="lower", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Grad-CAM, {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
