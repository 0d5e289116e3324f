"""`citab demo` end to end (small) and its refusal to overwrite."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import assert_user_error, run


def test_demo_runs_the_whole_path(tmp_path: Path):
    result = run("demo", "--dir", tmp_path / "demo", "--subjects", 30, "--epochs", 1)
    assert result.exit_code == 0, result.output
    for column in ("CITab", "random weights", "raw table", "table, trees"):
        assert column in result.output
    project = tmp_path / "demo" / "project"
    assert (project / "runs/demo/best.safetensors").is_file()
    reports = sorted(p.name.split("-")[0] for p in (project / "reports").iterdir())
    assert reports == ["explain", "probe", "probe", "probe"]


def test_demo_never_overwrites(tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    assert_user_error(run("demo", "--dir", tmp_path / "busy"), "not empty")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
