"""Cohort schemas: the shipped ones, strictness, line numbers, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from citab_cli.core.errors import CitabError
from citab_cli.core.schema.cohort import CohortSchema, load_schema, shipped_schema_dir, token
from citab_cli.core.yaml_io import parse_model

MINIMAL = (
    "cohort: demo\nsubject: ID\nimage: '{ID}.nii.gz'\n"
    "columns:\n  AGE: {type: numeric, description: Age in years}\n"
)


def parse(text: str) -> CohortSchema:
    return parse_model(text, Path("s.yaml"), CohortSchema, "cohort schema")  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["adni", "nacc", "aibl"])
def test_shipped_schemas_load_and_round_trip(name: str):
    schema = load_schema(shipped_schema_dir() / f"{name}.yaml")
    assert schema.cohort == name
    assert schema.label is not None and set(schema.label.class_names) == {"CN", "MCI", "AD"}
    again = parse(yaml.safe_dump(schema.model_dump(mode="json")))
    assert again == schema and again.fingerprint() == schema.fingerprint()


def test_same_concept_reads_alike_across_cohorts():
    by_cohort = {
        n: load_schema(shipped_schema_dir() / f"{n}.yaml") for n in ("adni", "nacc", "aibl")
    }
    mmse = {
        by_cohort["adni"].columns["MMSE"].description,
        by_cohort["nacc"].columns["NACCMMSE"].description,
        by_cohort["aibl"].columns["MMSCORE"].description,
    }
    assert len(mmse) == 1
    sex = {
        s.columns[c].description
        for s, c in [
            (by_cohort["adni"], "PTGENDER"),
            (by_cohort["nacc"], "SEX"),
            (by_cohort["aibl"], "PTGENDER"),
        ]
    }
    assert sex == {"Sex of the participant"}


def test_nacc_codes_are_per_column_not_cohort_wide():
    nacc = load_schema(shipped_schema_dir() / "nacc.yaml")
    assert {token(m) for m in nacc.missing} == {"", "-4"}
    assert "88" in nacc.columns["NACCMMSE"].missing
    assert "888.8" in nacc.columns["NACCBMI"].missing


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", "1"),
        ("1.0", "1"),
        (" 1 ", "1"),
        (1, "1"),
        (1.0, "1"),
        ("0.50", "0.5"),
        (0.5, "0.5"),
        ("Male", "Male"),
        (" Male ", "Male"),
        ("", ""),
        (None, ""),
        ("-4", "-4"),
        (-4, "-4"),
        ("888.8", "888.8"),
        ("NaN", "NaN"),
        ("inf", "inf"),
    ],
)
def test_token_compares_numbers_by_value(raw, expected):
    assert token(raw) == expected


def test_categorical_levels_by_index_and_shared_labels():
    schema = parse(
        MINIMAL.replace(
            "columns:\n",
            "columns:\n  SEX: {type: categorical, description: sex of the participant, "
            "levels: {1: male, M: male, 2: female}}\n",
        )
    )
    sex = schema.columns["SEX"]
    assert sex.level_names == ["male", "female"]
    assert sex.level_lookup == {"1": 0, "M": 0, "2": 1}


@pytest.mark.parametrize(
    "snippet, message",
    [
        ("columns:\n  ID: {type: numeric, description: the identifier}\n", "subject column 'ID'"),
        (
            "label: {column: DX, classes: {a: b}}\n"
            "columns:\n  DX: {type: numeric, description: dxdx}\n",
            "leak the diagnosis",
        ),
        ("drop: [AGE]\ncolumns:\n", "both in drop and in columns"),
        ("drop: [ID]\ncolumns:\n", "cannot be dropped"),
        ("columns:\n  X: {type: numeric, description: xxx, range: [3, 1]}\n", "low < high"),
        ("columns:\n  X: {type: numeric, description: xxx, normalize: range}\n", "needs a range"),
        ("columns:\n  X: {type: categorical, description: xxx}\n", "levels"),
        ("columns:\n  X: {type: text, description: xxx}\n", "type"),
    ],
)
def test_invalid_schemas_are_refused(snippet: str, message: str):
    with pytest.raises(CitabError, match="s.yaml") as info:
        parse(MINIMAL.replace("columns:\n", snippet, 1))
    assert message in str(info.value)


def test_image_pattern_must_stay_inside_images():
    with pytest.raises(CitabError, match="stay inside --images"):
        parse(MINIMAL.replace("'{ID}.nii.gz'", "'../{ID}.nii.gz'"))
    with pytest.raises(CitabError, match="needs at least one"):
        parse(MINIMAL.replace("'{ID}.nii.gz'", "'scan.nii.gz'"))


def test_cohort_name_must_be_a_safe_folder_name():
    with pytest.raises(CitabError, match="lower-case name"):
        parse(MINIMAL.replace("cohort: demo", "cohort: ../evil"))


def test_unknown_key_error_names_its_line():
    text = MINIMAL + "  MMSE: {type: numeric, description: mmse score, colour: red}\n"
    with pytest.raises(CitabError) as info:
        parse(text)
    assert str(info.value).startswith("s.yaml:6: unknown key 'colour'")


def test_malformed_yaml_names_its_line():
    with pytest.raises(CitabError, match=r"s.yaml:2: malformed YAML"):
        parse("cohort: demo\nsubject: ID: X\nimage: a\n")


def test_schema_check_command(tmp_path):
    from tests.helpers import assert_user_error, run

    result = run("schema", "check", shipped_schema_dir() / "nacc.yaml")
    assert result.exit_code == 0, result.output
    assert "cohort nacc" in result.output and "CN, MCI, AD" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "extra: 1\n")
    assert_user_error(run("schema", "check", bad), "bad.yaml:6", "unknown key 'extra'")
