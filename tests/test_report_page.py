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
from tests.conftest import (
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
    page = probed / "report" / "index.html"
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


@pytest.mark.slow
@pytest.mark.skipif(not browser.available(), reason="needs chromium, chromium-driver, selenium")
def test_a_browser_finds_no_error_and_no_broken_image(probed: Path, tmp_path: Path):
    page = project_page.write_page(Project(probed))
    shot = tmp_path / "report.png"
    errors, broken = browser.open_page(page, shot)
    assert errors == [] and broken == []
    assert shot.stat().st_size > 10_000
