"""`citab demo` end to end (small) and its refusal to overwrite."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import assert_user_error, run


def test_demo_runs_the_whole_path(tmp_path: Path, monkeypatch):
    """The whole path through the command; probes at one fraction and one seed to keep the
    default suite short (the probes themselves are tested in test_probe.py)."""
    from functools import partial

    from citab_cli.core.workflows import demo

    monkeypatch.setattr(demo, "run", partial(demo.run, fractions=(1.0,), seeds=1, shape=32))
    result = run("demo", "--dir", tmp_path / "demo", "--subjects", 30, "--epochs", 1)
    assert result.exit_code == 0, result.output
    for column in (
        "CITab",
        "random weights",
        "raw table",
        "table, trees",
        "over 1 seeds",
        "chance",
    ):
        assert column in result.output
    text = " ".join(result.output.split())
    # what pretraining taught the image pathway and matching, said in words
    assert "against the same network with random weights: adni " in text
    assert "above it on" in text and "of 3 cohorts" in text
    assert "Image-table matching on validation: AUC " in text and "(first " in text
    project = tmp_path / "demo" / "project"
    assert (project / "runs/demo/best.safetensors").is_file()
    reports = sorted(p.name.split("-")[0] for p in (project / "reports").iterdir())
    assert reports == ["explain", "probe", "probe", "probe"]
    page = project / "page" / "index.html"
    assert f"Everything on one page: {page}" in result.output.replace("\n", "")
    assert 'id="explanations"' in page.read_text()


def test_demo_never_overwrites(tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    assert_user_error(run("demo", "--dir", tmp_path / "busy"), "not empty")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
