"""Quality control of a cohort's preprocessed scans: robust outliers among the per-scan figures,
and a montage in which a mis-registered scan stands out in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core import figures

#: A scan is an outlier when a QC figure lies this many robust standard deviations (1.4826
#: median absolute deviations) from the cohort's median.
OUTLIER_Z = 3.5
#: The montage shows at most this many subjects (outliers first).
MONTAGE_SUBJECTS = 60
#: What each QC figure is, for messages.
FIGURES = {
    "brain_ml": ("brain volume", "ml"),
    "template_correlation": ("correlation with the MNI template", ""),
    "brain_fraction": (
        "fraction of the grid that is brain (minimal: brighter than its darkest)",
        "",
    ),
}


def outliers(subjects: list[str], qc: list[dict]) -> dict[str, list[str]]:
    """subject -> the QC figures on which it is an outlier (robust z beyond OUTLIER_Z); the
    template correlation only counts when it is low."""
    out: dict[str, list[str]] = {}
    if len(subjects) < 5:
        return out
    for key in FIGURES:
        values = np.array([q.get(key, np.nan) for q in qc], dtype=float)
        if np.isnan(values).all():
            continue
        median = np.nanmedian(values)
        spread = 1.4826 * np.nanmedian(np.abs(values - median))
        floor = 0.02 * abs(median) if median else 1e-6  # near-identical scans: no outliers
        z = (values - median) / max(spread, floor)
        for subject, score in zip(subjects, z, strict=True):
            low_only = key == "template_correlation"
            if (score < -OUTLIER_Z) or (not low_only and score > OUTLIER_Z):
                out.setdefault(subject, []).append(key)
    return out


def describe(subject: str, keys: list[str], entry: dict, qc: list[dict], montage: str) -> str:
    """The warning for one outlier: its figures against the cohort's medians, and where its
    montage (`montage`, the path shown) is."""
    parts = []
    for key in keys:
        name, unit = FIGURES[key]
        median = float(np.nanmedian([q.get(key, np.nan) for q in qc]))
        parts.append(f"{name} {entry[key]:g}{unit and ' ' + unit} (median {median:.3g})")
    return f"QC outlier {subject}: {'; '.join(parts)}; look at it in {montage} before pretraining"


#: Montage layout: subjects a row, the gap between subjects and the caption band above each
#: row, in tiles (one tile: one mid-slice).
MONTAGE_COLUMNS = 4
MONTAGE_GAP = 0.3
MONTAGE_CAPTION = 0.45
#: Caption size in points: 11.25 px at the montage's 90 dpi, so the page can show the montage
#: within its 1132 px column with no caption under 9 px.
MONTAGE_FONT = 9


def montage(
    path: Path, volumes: np.ndarray, subjects: list[str], flagged: dict, title: str
) -> None:
    """qc.png: per subject the three mid-slices (sagittal, coronal, axial) of its stored scan,
    outliers first, outlined in red and captioned with the QC figures they stand out on
    (`flagged`: subject -> those figures); a gap between subjects. One image drawn once (each
    slice stretched to a square tile, its own grey scale), so a cohort's montage takes well
    under a second."""
    from matplotlib.patches import Rectangle

    order = sorted(range(len(subjects)), key=lambda i: (subjects[i] not in flagged, i))
    shown = order[:MONTAGE_SUBJECTS]
    tile = max(int(max(volumes.shape[1:])), 8)
    rows = max(1, int(np.ceil(len(shown) / MONTAGE_COLUMNS)))
    step = (3 + MONTAGE_GAP) * tile
    caption = int(round(MONTAGE_CAPTION * tile))
    width = int(round(MONTAGE_COLUMNS * step - MONTAGE_GAP * tile))
    mosaic = np.full((rows * (tile + caption), width), np.nan, np.float32)
    plt = figures.pyplot()
    inches = MONTAGE_COLUMNS * 3.9  # wide; as tall as square tiles need, and a title band
    fig, ax = plt.subplots(figsize=(inches, inches * mosaic.shape[0] / width + 0.4))
    ax.axis("off")
    for slot, i in enumerate(shown):
        top = (slot // MONTAGE_COLUMNS) * (tile + caption) + caption
        left = int(round((slot % MONTAGE_COLUMNS) * step))
        reasons = flagged.get(subjects[i])
        for k, view in enumerate(_mid_slices(np.asarray(volumes[i], np.float32), tile)):
            mosaic[top : top + tile, left + k * tile : left + (k + 1) * tile] = view
            if reasons is not None:
                ax.add_patch(Rectangle((left + k * tile - 0.5, top - 0.5), tile, tile,
                                       fill=False, edgecolor="red", linewidth=2))  # fmt: skip
        text = subjects[i] if reasons is None else f"{subjects[i]}\n{', '.join(reasons)}"
        ax.text(left + 1.5 * tile, top - 1, text, ha="center", va="bottom", fontsize=MONTAGE_FONT,
                color="black" if reasons is None else "red")  # fmt: skip
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    more = f" ({len(subjects) - len(shown)} more not shown)" if len(subjects) > len(shown) else ""
    fig.suptitle(f"{title}: mid-slices, outliers first (red){more}", fontsize=MONTAGE_FONT + 2)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 0.4 / fig.get_figheight())
    figures.save(fig, path, dpi=90)


def _mid_slices(volume: np.ndarray, tile: int) -> list[np.ndarray]:
    """The sagittal, coronal and axial mid-slices of a (D, H, W) volume, each shown as the
    last axis pointing up, stretched to tile x tile and scaled to [0, 1]."""
    centre = [n // 2 for n in volume.shape]
    views = (volume[centre[0]], volume[:, centre[1]], volume[:, :, centre[2]])
    out = []
    for view in views:
        picture = view.T[::-1]  # rows: the last axis, its highest index at the top
        rows = np.linspace(0, picture.shape[0] - 1, tile).round().astype(int)
        cols = np.linspace(0, picture.shape[1] - 1, tile).round().astype(int)
        picture = picture[np.ix_(rows, cols)]
        low, high = float(np.nanmin(picture)), float(np.nanmax(picture))
        out.append((picture - low) / (high - low) if high > low else np.zeros_like(picture))
    return out
