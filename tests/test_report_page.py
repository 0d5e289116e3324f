"""`citab report`: one offline HTML page per project."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from citab_cli.core.data.project import Project
from citab_cli.core.evaluation import probe as probe_core
from citab_cli.core.workflows import project_page
from tests import browser
from tests.helpers import (
    SHAPE,
    FakeEncoder,
    assert_user_error,
    ingest,
    read_rows,
    run,
    tree_hash,
    write_rows,
)

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def probed(pretrained: Path, tmp_path_factory) -> Path:
    """The pretrained project with one quick probe report."""
    root = tmp_path_factory.mktemp("page") / "project"
    shutil.copytree(pretrained, root)
    shutil.rmtree(root / "reports", ignore_errors=True)  # what other tests added to the session's
    probe_core.probe(Project(root), "best.safetensors", ["adni"], (1.0,), seeds=1, resamples=20)
    return root


def _parse(page: Path):
    import html5lib

    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(page.read_text(encoding="utf-8"))


def _section_ids(tree) -> set[str]:
    return {s.get("id") for s in tree.iter("section")}


def test_the_page_parses_and_every_link_stays_on_the_machine(probed: Path):
    result = run("report", "--project", probed)
    assert result.exit_code == 0, result.output
    page = probed / "page" / "index.html"
    assert str(page) in result.output.replace("\n", "")
    tree = _parse(page)  # strict: a parse error raises
    assert _section_ids(tree) == {"project", "qc", "headers", "runs", "evaluations"}
    ids = {e.get("id") for e in tree.iter() if e.get("id")}
    links = [("src", e.get("src")) for e in tree.iter() if e.get("src")]
    links += [("href", e.get("href")) for e in tree.iter() if e.get("href")]
    assert len([1 for kind, _ in links if kind == "src"]) >= 5
    for _, link in links:
        parsed = urlparse(link)
        assert not parsed.scheme and not parsed.netloc, link  # no http(s), no //host, no data:
        if link.startswith("#"):
            assert link[1:] in ids, link
        else:
            assert (page.parent / unquote(parsed.path)).is_file(), link
    assert not list(tree.iter("script")) and not list(tree.iter("link"))
    for image in tree.iter("img"):
        assert image.get("alt", "").strip(), image.get("src")
    toc = [a.get("href") for a in tree.find(".//nav").iter("a")]
    assert toc == ["#project", "#qc", "#headers", "#runs", "#evaluations"]
    text = page.read_text()
    assert "Probe: adni" in text and "chosen by lowest validation SSL loss" in text
    assert "chance level of recall@5" in text and "near its chance level" in text


def test_sections_appear_only_when_their_data_exist(project: Path):
    page = project_page.write_page(Project(project))  # no header cache, no run, no report
    assert _section_ids(_parse(page)) == {"project", "qc"}
    assert "Pretraining runs" not in page.read_text()


def _hostile_cohort(raw_dir: Path, root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copytree(raw_dir / "aibl_mri", raw / "evil_mri")
    write_rows(raw / "evil.csv", read_rows(raw_dir / "aibl.csv"))
    schema = (raw_dir / "aibl.yaml").read_text().replace("cohort: aibl", "cohort: evil")
    old = "description: History of smoking,"
    assert old in schema
    schema = schema.replace(old, f'description: "{HOSTILE} History of smoking",')
    (raw / "evil.yaml").write_text(schema)
    result = ingest(raw, "evil", root, "--shape", SHAPE)
    assert result.exit_code == 0, result.output


def test_a_hostile_header_is_shown_as_text(
    project: Path, raw_dir: Path, tmp_path: Path, monkeypatch
):
    from citab_cli.core import headers

    _hostile_cohort(raw_dir, project, tmp_path)
    monkeypatch.setattr(headers, "load_encoder", lambda model: FakeEncoder())
    assert run("embed-headers", "--project", project).exit_code == 0
    page = project_page.write_page(Project(project))
    text = page.read_text()
    tree = _parse(page)
    assert "headers" in _section_ids(tree)
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert not list(tree.iter("script"))


def test_rewriting_replaces_the_page_whole(probed: Path, monkeypatch):
    store = Project(probed)
    first = project_page.write_page(store)
    before = tree_hash(first.parent)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(project_page.page_data, "runs_section", broken)
    with pytest.raises(KeyboardInterrupt):
        project_page.write_page(store)
    assert tree_hash(first.parent) == before
    assert [p.name for p in probed.iterdir() if p.name.startswith(".report")] == []
    monkeypatch.undo()
    (first.parent / "figures" / "stale.png").write_bytes(b"left from an older page")
    project_page.write_page(store)
    assert not (first.parent / "figures" / "stale.png").exists()


def test_report_bad_input(tmp_path: Path):
    assert_user_error(run("report", "--project", tmp_path), "not a citab project")
    assert list(tmp_path.iterdir()) == []


def test_probe_tables_carry_chance_and_a_verdict_per_fraction(probed: Path):
    page = project_page.write_page(Project(probed))
    text = " ".join(page.read_text().split())
    assert "<td>chance (one answer for everyone)</td>" in text
    assert "At 100% of labels, the CITab multimodal embedding scores" in text
    assert "comparisons at this fraction, each with an unadjusted 95% interval" in text
    # the sentence stays in view; the full table of comparisons folds away under it
    assert '<details class="comparisons"> <summary>All ' in text


def _document(scores: dict[str, float]) -> dict:
    """A probe report's document with these balanced accuracies at 10% of labels."""
    result = {
        k: {"0.1": {"balanced_accuracy": {"mean": v, "std": 0.01}}} for k, v in scores.items()
    }
    verdicts = {"random_multimodal": ("better", (0.05, 0.2)), "raw_table": ("worse", (-0.2, -0.01)),
                "raw_table_gbdt": ("not detected", (-0.1, 0.1))}  # fmt: skip
    comparisons = [
        {"method": "citab", "baseline": b,
         "balanced_accuracy": {"difference": sum(ci) / 2, "ci95": list(ci), "verdict": v,
                               "mde": 0.21, "se": 0.07, "n": 30}}
        for b, (v, ci) in verdicts.items()
    ]  # fmt: skip
    comparisons.append({**comparisons[-1], "method": "citab_image"})
    return {"results": result, "comparisons": {"0.1": comparisons}, "classes": ["CN", "MCI", "AD"],
            "label_fractions": [0.1], "cohort": "aibl", "run": "r", "seeds": 3,
            "subjects": {"test": 30}}  # fmt: skip


def test_a_probe_verdict_in_words_and_below_chance_marked():
    from citab_cli.core.evaluation import verdicts
    from citab_cli.core.workflows import page_reports

    document = _document({"citab": 0.30, "raw_table": 0.45, "random_multimodal": 0.2,
                          "raw_table_gbdt": 0.4})  # fmt: skip
    line = verdicts.headline(document, "0.1")
    assert line.startswith("At 10% of labels, the CITab multimodal embedding scores 0.300 (below")
    assert "better than the same network with random weights (+0.125 [+0.050, +0.200])" in line
    assert "worse than the raw table (-0.105 [-0.200, -0.010])" in line
    assert "not detectably different from gradient-boosted trees" in line and "±0.21" in line
    assert verdicts.multiplicity(document, "0.1").startswith("4 comparisons at this fraction")
    shown = page_reports._probe(document)
    cells = {row["name"]: row["cells"][0] for row in shown["rows"]}
    assert cells["CITab multimodal embedding"] == {
        "text": "0.300 ± 0.010 ▼", "tone": "worse", "title": "below chance"}  # fmt: skip
    assert cells["raw table (standardised + missing indicators)"] == "0.450 ± 0.010"
    assert cells["chance (one answer for everyone)"] == "0.333"
    assert [f["headline"] for f in shown["fractions"]] == [line]


def _shown_width(image, natural: int) -> float:
    """The width the page's CSS gives an <img>: its inline width, else its natural width
    within a grid cell, at least its inline min-width."""
    import re

    style = image.get("style") or ""
    fixed = re.search(r"(?<!-)width: (\d+)px", style)
    if fixed:
        return float(fixed.group(1))
    least = re.search(r"min-width: (\d+)px", style)
    return max(float(least.group(1)) if least else 0.0,
               min(natural, project_page.FIGURE_CELL_PX))  # fmt: skip


def test_every_figure_is_shown_large_enough_to_read(probed: Path):
    """From each PNG (its smallest text, in pixels, as drawn) and the page's CSS: no text of a
    figure is shown under 9 px."""
    from PIL import Image

    from citab_cli.core import figures

    page = project_page.write_page(Project(probed))
    images = list(_parse(page).iter("img"))
    assert len(images) >= 5
    for image in images:
        with Image.open(page.parent / image.get("src")) as png:
            natural, smallest = png.width, float(png.info[figures.SMALLEST_TEXT])
        shown = _shown_width(image, natural)
        assert shown * smallest / natural >= figures.LEGIBLE_PX - 0.05, image.get("src")


@pytest.mark.slow
@pytest.mark.skipif(not browser.available(), reason="needs chromium, chromium-driver, selenium")
def test_a_browser_shows_every_figure_large_enough_to_read(probed: Path):
    from PIL import Image

    from citab_cli.core import figures

    page = project_page.write_page(Project(probed))
    for src, (shown, natural) in browser.image_widths(page).items():
        with Image.open(page.parent / src) as png:
            smallest = float(png.info[figures.SMALLEST_TEXT])
        assert shown * smallest / natural >= figures.LEGIBLE_PX - 0.05, (src, shown, natural)


@pytest.mark.slow
@pytest.mark.skipif(not browser.available(), reason="needs chromium, chromium-driver, selenium")
def test_a_browser_finds_no_error_and_no_broken_image(probed: Path, tmp_path: Path):
    page = project_page.write_page(Project(probed))
    shot = tmp_path / "report.png"
    errors, broken = browser.open_page(page, shot)
    assert errors == [] and broken == []
    assert shot.stat().st_size > 10_000
