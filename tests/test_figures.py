"""Figures a reader looks at: labels that are whole words, legends in the report's words, outliers
captioned on the QC montage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize(
    "header",
    [
        "Montreal Cognitive Assessment total score (points)",
        "Clinical Dementia Rating sum of boxes, with a description far longer than any axis "
        "has room for (points)",
        "ADAS-Cog total score, 13-item version (points)",
    ],
)
def test_axis_labels_never_cut_a_word(header: str):
    from citab_cli.core.explain.drawing import _one_line, _short

    words = set(header.split())
    for label in (_short(header), _one_line(header)):
        assert set(label.split()) - {"…"} <= words, label
        assert label.count("\n") <= 1


def test_legends_use_the_reports_names_and_epochs_are_whole(tmp_path: Path, monkeypatch):
    from citab_cli.core import figures
    from citab_cli.core.evaluation.evaluation_report import (
        curve_figure,
        fraction_key,
        label_fraction_figure,
    )
    from citab_cli.core.evaluation.features import FEATURE_TITLES

    seen = {}
    monkeypatch.setattr(figures, "save", lambda fig, path, dpi=120: seen.setdefault(path, fig))
    summary = {name: {"0.1": {"balanced_accuracy": {"mean": 0.5, "std": 0.1}},
                      "1": {"balanced_accuracy": {"mean": 0.6, "std": 0.1}}}
               for name in ("citab", "citab_raw", "random_multimodal")}  # fmt: skip
    path = tmp_path / "curve.png"
    label_fraction_figure(path, (0.1, 1.0), summary, ["CN", "AD"], fraction_key, FEATURE_TITLES)
    legend = [t.get_text() for t in seen[path].axes[0].get_legend().get_texts()]
    assert "CITab multimodal + raw table" in legend and "citab_raw" not in legend
    epochs = tmp_path / "epochs.png"
    curve_figure(epochs, {"finetuned": [[0.4, 0.5, 0.6]]}, "bacc", {"finetuned": "tuned"})
    ax = seen[epochs].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["tuned"]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)


def test_the_qc_montage_captions_each_outlier_with_its_reason(tmp_path: Path, monkeypatch):
    from matplotlib.patches import Rectangle

    from citab_cli.core import figures
    from citab_cli.core.scans import qc

    seen = {}
    monkeypatch.setattr(figures, "save", lambda fig, path, dpi=120: seen.setdefault(path, fig))
    volumes = np.random.default_rng(0).random((5, 8, 8, 8)).astype(np.float32)
    volumes[3] = np.linspace(0, 1, 8)[None, None, :]  # S3: brightest at the top of every slice
    subjects = [f"S{i}" for i in range(5)]
    qc.montage(tmp_path / "qc.png", volumes, subjects, {"S3": ["brain_volume_ml"]}, "demo")
    (ax,) = seen[tmp_path / "qc.png"].axes
    captions = [t.get_text() for t in ax.texts]
    assert captions[0] == "S3\nbrain_volume_ml"  # outliers first, with what they stand out on
    assert set(captions[1:]) == {"S0", "S1", "S2", "S4"}
    assert [t.get_color() for t in ax.texts][:2] == ["red", "black"]
    outlines = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(outlines) == 3 and all(p.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for p in outlines)
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (2 * (8 + 4), round(4 * 3.3 * 8 - 0.3 * 8))  # 2 rows of 4 subjects
    first = np.ma.filled(mosaic[4:12, 8:16], np.nan)  # S3's coronal mid-slice, first tile row
    np.testing.assert_allclose(first[:, 0], np.linspace(1, 0, 8))  # the last axis points up
    assert np.isnan(np.ma.filled(mosaic[4:12, 24:26], np.nan)).all()  # the gap: background


def test_the_qc_hint_is_a_path_the_user_can_open_from_where_they_stand(tmp_path: Path, monkeypatch):
    from citab_cli.core.data.ingest_execute import _from_here

    target = tmp_path / "study" / "cohorts" / "adni" / "qc.png"
    monkeypatch.chdir(tmp_path)
    assert _from_here(target) == "study/cohorts/adni/qc.png"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _from_here(target) == str(target.resolve())


def test_every_method_of_a_probe_figure_has_its_own_colour_and_marker(tmp_path: Path, monkeypatch):
    """All thirteen feature sets of a probe in one label-fraction figure: no two share a colour
    or a marker, and the axis says what the spread is over (label subsets, as the table)."""
    from matplotlib.colors import to_hex

    from citab_cli.core import figures
    from citab_cli.core.evaluation.evaluation_report import fraction_key, label_fraction_figure
    from citab_cli.core.evaluation.features import FEATURE_TITLES, FEATURES

    seen = {}
    monkeypatch.setattr(figures, "save", lambda fig, path, dpi=120: seen.setdefault(path, fig))
    summary = {name: {"0.1": {"balanced_accuracy": {"mean": 0.5, "std": 0.1}},
                      "1": {"balanced_accuracy": {"mean": 0.6, "std": 0.1}}}
               for name in FEATURES}  # fmt: skip
    path = tmp_path / "curve.png"
    label_fraction_figure(path, (0.1, 1.0), summary, ["CN", "AD"], fraction_key, FEATURE_TITLES)
    ax = seen[path].axes[0]
    bars = [c for c in ax.containers if c.get_label() in FEATURE_TITLES.values()]
    lines = [bar.lines[0] for bar in bars]  # each method's data line
    assert len(lines) == len(FEATURES)
    assert len({to_hex(line.get_color()) for line in lines}) == len(FEATURES)
    assert len({line.get_marker() for line in lines}) == len(FEATURES)
    assert "over label subsets" in ax.get_ylabel()


def test_a_scan_map_lets_the_anatomy_show_through(tmp_path: Path):
    """A flat map (over the whole brain) drawn over a scan: where the map is, the picture still
    varies with the scan's texture, so the anatomy is not hidden under one colour."""
    from matplotlib.image import imread

    from citab_cli.core.explain import drawing as explain_figures

    rng = np.random.default_rng(0)
    scan = np.zeros((24, 24, 24), np.float32)
    scan[4:20, 4:20, 4:20] = 1 + rng.normal(0, 0.3, (16, 16, 16))
    cam = np.zeros_like(scan)
    cam[4:20, 4:20, 4:20] = 0.9
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -48
    path = tmp_path / "map.png"
    explain_figures.overlay(path, scan, cam, affine, "subject 1")
    picture = imread(path)[..., :3]
    height, width = picture.shape[:2]
    middle = picture[height // 3 : 2 * height // 3, width // 10 : width // 4]  # first view
    assert middle.std(axis=(0, 1)).max() > 0.03  # texture, not one flat colour
    assert 0 < explain_figures.CAM_OPACITY < 1
