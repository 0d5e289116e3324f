"""Arbitrary CSV bytes and schema text end in a result or a CitabError, never anything else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from citab_cli.core.data.table import validate
from citab_cli.core.errors import CitabError
from citab_cli.core.schema.cohort import CohortSchema, load_schema, shipped_schema_dir
from citab_cli.core.schema.raw_table import read_csv
from citab_cli.core.yaml_io import parse_model

ADNI = load_schema(shipped_schema_dir() / "adni.yaml")
HEADER = (
    "PTID,VISCODE,DX,AGE,PTGENDER,PTEDUCAT,APOE4,MMSE,MOCA,CDRSB,ADAS13,RAVLT_immediate,FAQ,"
    "ABETA,IMAGEUID"
)
cells = st.sampled_from(
    [
        "",
        "NA",
        "-4",
        "bl",
        "m06",
        "CN",
        "Dementia",
        "Male",
        "x",
        "1",
        "31",
        ">1700",
        "1e400",
        "nan",
        "'",
        '"',
        ",",
        "\n",
        "0.5",
        "S_1",
        "S_2",
    ]
)


def _check(path: Path) -> None:
    try:
        validate(read_csv(path), ADNI, Path("adni.yaml"))
    except CitabError as exc:
        assert str(exc) and "\n" not in str(exc).strip()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
@example(data=b"\r\x01")
def test_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "any.csv"
    path.write_bytes(data)
    _check(path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=18), min_size=0, max_size=6))
def test_csv_shaped_text(tmp_path, rows):
    path = tmp_path / "any.csv"
    path.write_text(HEADER + "\n" + "\n".join(",".join(r) for r in rows))
    _check(path)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_schema_text(text):
    try:
        parse_model(text, Path("s.yaml"), CohortSchema, "cohort schema")
    except CitabError as exc:
        assert str(exc).startswith("s.yaml")


def test_multiline_cell_is_shown_on_one_line(tmp_path):
    path = tmp_path / "adni.csv"
    path.write_text(HEADER + '\nS_1,bl,CN,"70\nyears",Male,16,1,29,27,0,5,40,0,,1\n')
    try:
        validate(read_csv(path), ADNI, Path("adni.yaml"))
    except CitabError as exc:
        assert "'70\\nyears'" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("expected a CitabError")
