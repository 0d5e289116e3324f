"""The pictures of `citab explain`: column attributions, prototype routing, Grad-CAM overlays,
and Grad-CAM maps as NIfTI in the project grid's world space."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from citab_cli.core import figures

#: Bars in the column attribution chart.
SHOWN_COLUMNS = 20
#: Grad-CAM values below this are left transparent so the anatomy stays visible.
CAM_FLOOR = 0.25
#: Opacity of the map over the scan: a map that covers the whole brain (a flat one) still lets
#: the anatomy show through.
CAM_OPACITY = 0.6
#: Header texts longer than this are shortened in figure labels.
LABEL_CHARACTERS = 48


@contextlib.contextmanager
def quiet():
    """Library warnings (matplotlib, nilearn, nibabel) stay out of the user's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _short(text: str) -> str:
    """A header for an axis: wrapped on words over two lines, shortened (on a word, never inside
    one such as a unit) only when longer still."""
    import textwrap

    line = LABEL_CHARACTERS
    return textwrap.fill(textwrap.shorten(text, 2 * line, placeholder=" …"), line)


def _one_line(text: str) -> str:
    """A header on one line, shortened on a word when too long."""
    import textwrap

    return textwrap.shorten(text, LABEL_CHARACTERS, placeholder=" …")


def bar_chart(path: Path, ranking: list[tuple[str, float]], cohort: str) -> None:
    """The strongest columns' mean |attribution| as a horizontal bar chart."""
    plt = figures.pyplot()
    shown = ranking[:SHOWN_COLUMNS][::-1]
    fig, ax = plt.subplots(figsize=(8.0, 0.5 * len(shown) + 1.2), layout="constrained")
    ax.barh([_short(t) for t, _ in shown], [v for _, v in shown], color="tab:blue")
    ax.set_xlabel("mean |integrated gradient| on the predicted class")
    ax.set_title(f"{cohort}: columns by header text")
    ax.tick_params(axis="y", labelsize=8)
    figures.save(fig, path, dpi=120)


def heatmap(path: Path, routing: dict) -> None:
    """One panel per cohort: its columns (by header text) x (layer, prototype) mean gates."""
    plt = figures.pyplot()
    matrix = routing["matrix"]
    _, layers, k = matrix.shape
    cohorts = list(dict.fromkeys(routing["cohorts"]))
    sizes = [routing["cohorts"].count(c) for c in cohorts]
    fig, axes = plt.subplots(
        len(cohorts),
        1,
        figsize=(4.5 + 0.42 * layers * k, 0.26 * sum(sizes) + 1.1 * len(cohorts) + 0.8),
        height_ratios=sizes,
        squeeze=False,
        layout="constrained",
    )
    image = None
    for ax, cohort in zip(axes[:, 0], cohorts, strict=True):
        rows = [i for i, c in enumerate(routing["cohorts"]) if c == cohort]
        flat = matrix[rows].reshape(len(rows), layers * k)
        image = ax.imshow(flat, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        labels = [_one_line(routing["headers"][i]) for i in rows]
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_xticks(
            range(layers * k),
            [f"L{layer + 1} P{p + 1}" for layer in range(layers) for p in range(k)],
            fontsize=7,
        )
        ax.set_title(cohort, fontsize=9, loc="left")
    fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.03, label="mean gate")
    fig.suptitle("P-MoLin routing: mean gate of each column (L layer, P prototype)", fontsize=9)
    figures.save(fig, path, dpi=120)


def _image(volume: np.ndarray, affine: np.ndarray):
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)


def save_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """A (D, H, W) grid volume as NIfTI, placed in the project grid's world space."""
    import nibabel as nib

    nib.save(_image(volume, affine), path)


def cut_voxel(scan: np.ndarray, cam: np.ndarray) -> tuple[int, ...]:
    """Where to cut the views: the map's peak, or the brain's centre when the map is flat (a
    corner of the grid would show nothing)."""
    if cam.max() > cam.min():
        return tuple(int(i) for i in np.unravel_index(int(cam.argmax()), cam.shape))
    brain = scan > scan.min() + 1e-3 * (scan.max() - scan.min())
    if not brain.any():
        return tuple(n // 2 for n in scan.shape)
    return tuple(int(round(c)) for c in np.argwhere(brain).mean(0))


def overlay(
    path: Path,
    scan: np.ndarray,
    cam: np.ndarray,
    affine: np.ndarray,
    title: str,
    method: str = "Grad-CAM",
) -> None:
    """A scan map drawn with nilearn over the subject's scan, cut through the map's peak (the
    brain's centre when the map is flat)."""
    from nilearn import plotting

    plt = figures.pyplot()
    cut = (affine @ np.array([*cut_voxel(scan, cam), 1.0]))[:3]
    fig = plt.figure(figsize=(9, 3.4))
    display = plotting.plot_stat_map(
        _image(cam, affine),
        bg_img=_image(scan, affine),
        cut_coords=cut,
        threshold=CAM_FLOOR,
        vmax=1.0,
        cmap="hot",
        display_mode="ortho",
        draw_cross=False,
        black_bg=True,
        dim=0,
        colorbar=True,
        figure=fig,
        title=f"{method}, {title}",
        transparency=CAM_OPACITY,
    )
    smallest = figures.smallest_text_px(fig, 120)
    metadata = {figures.SMALLEST_TEXT: f"{smallest:.2f}"} if smallest else {}
    fig.savefig(str(path), dpi=120, facecolor="black", edgecolor="black", metadata=metadata)
    display.close()
    plt.close(fig)
