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


def montage(
    path: Path, volumes: np.ndarray, subjects: list[str], flagged: dict, title: str
) -> None:
    """qc.png: per subject the three mid-slices (sagittal, coronal, axial) of its stored scan,
    outliers first, outlined in red and captioned with the QC figures they stand out on
    (`flagged`: subject -> those figures); a gap between subjects."""
    import warnings

    order = sorted(range(len(subjects)), key=lambda i: (subjects[i] not in flagged, i))
    shown = order[:MONTAGE_SUBJECTS]
    columns = 4
    rows = max(1, int(np.ceil(len(shown) / columns)))
    # three panels a subject, then a narrow spacer before the next subject
    ratios = ([1, 1, 1, 0.3] * columns)[:-1]
    plt = figures.pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig, axes = plt.subplots(rows, len(ratios), figsize=(columns * 3.9, rows * 1.55 + 0.5),
                                 squeeze=False, width_ratios=ratios,
                                 layout="constrained")  # fmt: skip
        for ax in axes.flat:
            ax.axis("off")
        for slot, i in enumerate(shown):
            _subject_panels(axes[slot // columns], (slot % columns) * 4, volumes[i],
                            subjects[i], flagged.get(subjects[i]))  # fmt: skip
        more = (
            f" ({len(subjects) - len(shown)} more not shown)" if len(subjects) > len(shown) else ""
        )
        fig.suptitle(f"{title}: mid-slices, outliers first (red){more}", fontsize=9)
        figures.save(fig, path, dpi=90)


def _subject_panels(row, first: int, volume, subject: str, reasons: list[str] | None) -> None:
    """One subject's three mid-slices in `row` from column `first`; an outlier outlined in red
    and captioned with what it stands out on."""
    volume = np.asarray(volume, dtype=np.float32)
    centre = [n // 2 for n in volume.shape]
    views = (volume[centre[0]], volume[:, centre[1]], volume[:, :, centre[2]])
    for k, view in enumerate(views):
        ax = row[first + k]
        ax.imshow(view.T, cmap="gray", origin="lower", aspect="auto")
        if reasons is not None:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2)
        if k == 1:
            caption = subject if reasons is None else f"{subject}\n{', '.join(reasons)}"
            colour = "black" if reasons is None else "red"
            ax.set_title(caption, fontsize=6, color=colour)
