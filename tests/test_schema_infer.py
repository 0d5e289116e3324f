"""`citab schema infer` drafts a schema that loads, with sensible guesses."""

from __future__ import annotations

from pathlib import Path

import yaml

from citab_cli.core.data.schema import load_schema
from tests.conftest import assert_user_error, run


def test_draft_of_nacc_is_a_valid_schema(raw_dir: Path, tmp_path: Path):
    out = tmp_path / "nacc.yaml"
    result = run("schema", "infer", raw_dir / "nacc.csv", "-o", out)
    assert result.exit_code == 0, result.output
    schema = load_schema(out)
    assert schema.subject == "NACCID"
    assert schema.visit is not None and schema.visit.baseline == "1"
    assert schema.label is not None and schema.label.column == "NACCUDSD"
    assert "-4" in schema.missing
    assert schema.columns["SEX"].type == "categorical"
    assert "TODO" in out.read_text()


def test_suspected_missing_codes_and_types(tmp_path: Path):
    rows = ["ID,TRAILB,SCORE,SEX,NOTE"]
    for i in range(40):
        trail = "996" if i == 3 else "-4" if i == 5 else str(60 + i * 3)
        score = "88" if i == 7 else str(i % 30)
        rows.append(f"P{i},{trail},{score},{1 + i % 2},free text number {i}")
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")
    result = run("schema", "infer", tmp_path / "mine.csv")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.output)
    assert doc["columns"]["TRAILB"]["missing"] == [-4, 996]
    assert doc["columns"]["TRAILB"]["range"] == [60, 177]
    assert doc["columns"]["SCORE"]["missing"] == [88]
    assert doc["columns"]["SEX"]["type"] == "categorical"
    assert "NOTE" not in doc["columns"] and "NOTE (free text)" in result.output


def test_draft_of_adni_drops_dates_and_reads_text_levels(raw_dir: Path):
    result = run("schema", "infer", raw_dir / "adni.csv")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.output)
    assert "EXAMDATE" in doc["drop"]
    assert doc["columns"]["PTGENDER"]["levels"] == {"Female": "female", "Male": "male"}
    assert doc["visit"] == {"column": "VISCODE", "baseline": "bl"}


def test_infer_never_overwrites(raw_dir: Path, tmp_path: Path):
    out = tmp_path / "exists.yaml"
    out.write_text("mine")
    assert_user_error(run("schema", "infer", raw_dir / "aibl.csv", "-o", out), "already exists")
    assert out.read_text() == "mine"


def test_infer_on_garbage(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01\x02" * 100)
    assert_user_error(run("schema", "infer", bad), "binary file")
