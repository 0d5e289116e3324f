"""`citab schema infer` drafts a schema that loads, with sensible guesses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from citab_cli.core.schema.cohort import load_schema
from tests.helpers import assert_user_error, run


def test_draft_of_nacc_is_a_valid_schema(raw_dir: Path, tmp_path: Path):
    out = tmp_path / "nacc.yaml"
    result = run("schema", "infer", raw_dir / "nacc.csv", "-o", out)
    assert result.exit_code == 0, result.output
    schema = load_schema(out, draft=True)
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
    doc = yaml.safe_load(result.stdout)
    assert doc["columns"]["TRAILB"]["missing"] == [-4, 996]
    assert doc["columns"]["TRAILB"]["range"] == [60, 177]
    assert doc["columns"]["SCORE"]["missing"] == [88]
    assert doc["columns"]["SEX"]["type"] == "categorical"
    assert "NOTE" not in doc["columns"]
    assert "NOTE" in result.output and "free text" in result.output


def test_draft_of_adni_drops_dates_and_reads_text_levels(raw_dir: Path):
    result = run("schema", "infer", raw_dir / "adni.csv")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
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


def _write(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _clinic(path: Path) -> Path:
    """A German memory clinic: 999 and n.a. in every test column, DD.MM.YYYY dates, names."""
    import numpy as np

    rng = np.random.default_rng(1)
    rows = []
    for i in range(50):
        dx = ["gesund", "LKB", "Demenz"][i % 3]

        def score(value: float, i=i) -> str:
            return "999" if i % 11 == 3 else "n.a." if i % 13 == 5 else str(int(value))

        rows.append(
            {
                "Pat_Nr": f"P{100 + i}",
                "Nachname": ["Meier", "Huber", "Schmidt"][i % 3],
                "Geburtsdatum": f"{1 + i % 27:02d}.{1 + i % 12:02d}.{1930 + i % 25}",
                "Untersuchungsdatum": f"{1 + i % 27:02d}.03.2019",
                "Alter": str(60 + i % 30),
                "Geschlecht": "mw"[i % 2],
                "MMSE": score(29 - 3 * (i % 3) - rng.integers(0, 3)),
                "Bildungsjahre": score(8 + i % 12),
                "Uhrentest": score(i % 7),
                "GDS": score(i % 15),
                "MoCA": score(26 - 3 * (i % 3) - rng.integers(0, 3)),
                "TMT_B": score(80 + 3 * i),
                "Diagnose": dx,
            }
        )
    return _write(path, rows)


def _research(path: Path) -> Path:
    """Censored lab values, not_done, repeated visits, ISO dates, an unmapped group."""
    rows = []
    for i in range(30):
        for visit in ("V1", "V2")[: 1 + i % 2]:
            csf = "<8" if i % 7 == 0 else ">120" if i % 7 == 1 else f"{20 + 3 * i}.5"
            rows.append(
                {
                    "subject": f"sub-{i:03d}",
                    "visit": visit,
                    "scan_date": f"2021-{1 + i % 9:02d}-1{i % 9}",
                    "group": ["control", "MCI", "AD dementia", "other"][i % 4],
                    "csf_ptau": "not_done" if i % 9 == 4 else csf,
                    "amyloid": ">1.8" if i % 10 == 0 else f"{1.0 + i / 50:.2f}",
                    "age": f"{60 + i / 2:.1f}",
                }
            )
    return _write(path, rows)


def _biobank(path: Path) -> Path:
    """Negative codes (-1 do not know, -3 prefer not to answer) in three columns."""
    rows = []
    for i in range(60):

        def coded(value: int, i=i) -> str:
            return "-1" if i % 10 == 1 else "-3" if i % 10 == 7 else str(value)

        rows.append(
            {
                "eid": str(1000000 + 7 * i),
                "845-0.0": coded(14 + i % 8),
                "1558-0.0": coded(1 + i % 6),
                "20016-0.0": coded(3 + i % 11),
                "21003-0.0": str(45 + i % 30),
                "naccage_like": str(80 + i % 10),  # 88 is a real value here
                "date_of_attending": f"2010-{1 + i % 9:02d}-0{1 + i % 9}",
            }
        )
    return _write(path, rows)


def _draft(csv_path: Path, *extra):
    result = run("schema", "infer", csv_path, *extra)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout), result.stdout, result.output


def test_cohort_wide_codes_numbers_and_identifiers(tmp_path: Path):
    doc, text, shown = _draft(_clinic(tmp_path / "klinik.csv"))
    assert doc["missing"] == ["", 999, "n.a."]
    assert "# 999:" in text and "cells in 6 columns" in text  # the counts behind the proposal
    for column in ("MMSE", "Bildungsjahre", "Uhrentest", "GDS", "MoCA", "TMT_B"):
        spec = doc["columns"][column]
        assert spec["type"] == "numeric" and "missing" not in spec, column
        assert spec["range"][1] < 999
    assert doc["columns"]["MMSE"]["range"][1] <= 30
    assert set(doc["drop"]) == {"Nachname", "Geburtsdatum", "Untersuchungsdatum"}
    assert doc["subject"] == "Pat_Nr" and "visit" not in doc
    assert doc["label"] == {
        "column": "Diagnose",
        "classes": {"Demenz": "AD", "LKB": "MCI", "gesund": "CN"},
    }
    assert "Diagnose" not in doc["columns"]
    assert doc["columns"]["Alter"]["covariate"] == "age"
    assert doc["columns"]["Geschlecht"]["covariate"] == "sex"
    assert doc["columns"]["Bildungsjahre"]["covariate"] == "education"
    assert "Review" in shown and "cohort-wide" in shown


def test_censoring_not_done_visits_and_unmapped_classes(tmp_path: Path):
    doc, text, shown = _draft(_research(tmp_path / "research.csv"))
    csf = doc["columns"]["csf_ptau"]
    assert csf["parse"] == {"<8": 8, ">120": 120} and csf["missing"] == ["not_done"]
    assert csf["range"] == [8, 120]
    assert doc["columns"]["amyloid"]["parse"] == {">1.8": 1.8}
    assert doc["visit"] == {"column": "visit", "baseline": "V1"}
    assert doc["subject"] == "subject"
    assert doc["label"]["classes"] == {
        "AD dementia": "AD",
        "MCI": "MCI",
        "control": "CN",
        "other": None,
    }
    assert "other: null  # TODO" in text
    assert doc["drop"] == ["scan_date"]
    assert "parse <8, >120" in " ".join(shown.split())


def test_negative_codes_everywhere_and_a_real_88(tmp_path: Path):
    doc, text, _ = _draft(_biobank(tmp_path / "biobank.csv"))
    assert doc["missing"] == ["", -1, -3]
    for column in ("845-0.0", "1558-0.0", "20016-0.0"):
        assert "missing" not in doc["columns"][column]
        assert doc["columns"][column]["range"][0] >= 0
    assert doc["columns"]["naccage_like"]["range"] == [80, 89]  # 88 kept as an age
    assert doc["drop"] == ["date_of_attending"]


def test_a_sentinel_that_is_real_data_elsewhere_stays_per_column(tmp_path: Path):
    rows = [
        {"ID": f"S{i}", "AGE": str(80 + i % 10), "MMSE": "88" if i % 9 == 0 else str(i % 30),
         "GDS": "88" if i % 7 == 0 else str(i % 15)}
        for i in range(60)
    ]  # fmt: skip
    doc, _, _ = _draft(_write(tmp_path / "mixed.csv", rows))
    assert 88 not in doc["missing"]  # AGE 88 is an age
    assert doc["columns"]["MMSE"]["missing"] == [88]
    assert doc["columns"]["GDS"]["missing"] == [88]
    assert "missing" not in doc["columns"]["AGE"]


def test_a_data_dictionary_fills_descriptions_and_units(tmp_path: Path):
    csv_path = _biobank(tmp_path / "biobank.csv")
    (tmp_path / "dict.csv").write_text(
        "FLDNAME,TEXT,UNITS\n845-0.0,Age completed full time education,years\n"
        "20016-0.0,Fluid intelligence score,points\n"
    )
    doc, _, shown = _draft(csv_path, "--dictionary", tmp_path / "dict.csv")
    assert doc["columns"]["845-0.0"]["description"] == "Age completed full time education"
    assert doc["columns"]["845-0.0"]["unit"] == "years"
    assert doc["columns"]["1558-0.0"]["description"].startswith("TODO")  # not in the dictionary
    (tmp_path / "own.csv").write_text("Feld,Erklaerung\n21003-0.0,Age at the assessment visit\n")
    doc, _, _ = _draft(csv_path, "--dictionary", tmp_path / "own.csv", "--dictionary-columns",
                       "Feld,Erklaerung")  # fmt: skip
    assert doc["columns"]["21003-0.0"]["description"] == "Age at the assessment visit"
    assert_user_error(
        run("schema", "infer", csv_path, "--dictionary", tmp_path / "own.csv"),
        "--dictionary-columns",
    )
    assert_user_error(
        run(
            "schema",
            "infer",
            csv_path,
            "--dictionary",
            tmp_path / "own.csv",
            "--dictionary-columns",
            "Feld",
        ),  # fmt: skip
        "two column names",
    )


@pytest.mark.parametrize("dialect", ["clinic", "research", "biobank"])
def test_a_draft_passes_the_check_and_ingests_once_filled(tmp_path: Path, dialect: str):
    import re

    from tests.helpers import write_nifti

    make = {"clinic": _clinic, "research": _research, "biobank": _biobank}[dialect]
    csv_path = make(tmp_path / f"{dialect}.csv")
    draft = tmp_path / "draft.yaml"
    assert run("schema", "infer", csv_path, "-o", draft).exit_code == 0
    # as drafted, with TODOs, it does not pass the check; every TODO column is named at once
    refused = assert_user_error(run("schema", "check", draft), "still a draft", "TODO description")
    columns = yaml.safe_load(draft.read_text())["columns"]
    for name, column in columns.items():
        if "TODO" in column["description"]:
            assert name in refused
    filled = re.sub(r"TODO: describe (\S+)'", r"Measured value of \1'", draft.read_text())
    filled = filled.replace("TODO name of", "level")
    (tmp_path / "filled.yaml").write_text(filled)
    schema = load_schema(tmp_path / "filled.yaml")
    import numpy as np

    images = tmp_path / "mri"
    brain = np.pad(np.ones((12, 12, 12), np.float32), 6)  # a bright block in a dark field
    for subject in {r[schema.subject] for r in _rows(csv_path)}:
        write_nifti(images / f"{subject}_T1.nii.gz", brain)
    assert schema.image_preprocess == "t1-linear"  # drafts assume scans as scanners write them
    result = run("ingest", csv_path, "--images", images, "--schema", tmp_path / "filled.yaml",
                 "--shape", 16, "--spacing", 4, "--workers", 1, "--preprocess", "minimal",
                 "--project", tmp_path / "project")  # fmt: skip
    assert result.exit_code == 0, result.output


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_an_unfinished_draft_neither_checks_nor_ingests(raw_dir: Path, tmp_path: Path):
    """The NACC draft: TODO descriptions, TODO level names and a label whose codes map to no
    class are all named in one message; ingest refuses it the same way and writes nothing."""
    from tests.helpers import tree_hash

    draft = tmp_path / "nacc.yaml"
    assert run("schema", "infer", raw_dir / "nacc.csv", "-o", draft).exit_code == 0
    text = draft.read_text()
    label = yaml.safe_load(text)["label"]
    label["classes"] = {code: None for code in label["classes"]}  # nothing mapped yet
    document = yaml.safe_load(text)
    document["label"] = label
    draft.write_text(yaml.safe_dump(document, sort_keys=False))
    message = assert_user_error(run("schema", "check", draft), "still a draft")
    assert "TODO description of" in message
    assert "TODO level name(s) of" in message
    assert "label NACCUDSD maps no value to a class" in message
    project = tmp_path / "project"
    result = run("ingest", raw_dir / "nacc.csv", "--images", raw_dir / "nacc_mri", "--schema",
                 draft, "--project", project, "--workers", 1)  # fmt: skip
    assert assert_user_error(result, "still a draft") == message
    assert tree_hash(project) == ""


def test_adni_and_nacc_identifiers_years_and_the_subject_the_scans_use(raw_dir: Path):
    from citab_cli.core.schema.draft import draft

    adni = draft(raw_dir / "adni.csv", images=raw_dir / "adni_mri")
    assert adni.schema.subject == "PTID" and adni.schema.image_pattern == "**/*{PTID}*.nii*"
    assert {"RID", "IMAGEUID"} <= set(adni.schema.drop)
    review = {row.column: row for row in adni.review}
    assert "unique per subject" in review["PTID"].guess
    assert "ids found in the image file names" in review["PTID"].guess
    assert "per subject and visit" not in review["PTID"].guess
    assert "instrument's" in review["MMSE"].todo  # an observed range is marked for review
    blind = draft(raw_dir / "adni.csv")  # without the scans: column order, and a question
    assert blind.schema.subject == "RID" and "PTID" in blind.schema.drop
    assert "PTID also identifies subjects" in {r.column: r for r in blind.review}["RID"].todo
    nacc = draft(raw_dir / "nacc.csv")
    assert {"NACCADC", "VISITYR", "BIRTHYR"} <= set(nacc.schema.drop)
    assert "NACCADC" not in nacc.schema.columns and "VISITYR" not in nacc.schema.columns


def test_infer_images_must_be_a_folder(raw_dir: Path, tmp_path: Path):
    result = run("schema", "infer", raw_dir / "adni.csv", "--images", tmp_path / "nothing")
    assert_user_error(result, "--images", "not a folder")


def test_the_proposed_pipeline_rests_on_the_scans(tmp_path: Path):
    """minimal for skull-stripped scans or scans on one registered grid, t1-linear for scans
    as scanners write them, and a stated assumption without the scans; each with its reason."""
    import numpy as np

    from citab_cli.core.schema.infer_scans import propose
    from tests.helpers import raw_subject, write_nifti

    pipeline, why = propose(None, None)
    assert pipeline == "t1-linear" and "assumed" in why and "--images" in why
    heads = tmp_path / "heads"
    heads.mkdir()
    for seed in range(3):
        raw_subject(heads, seed, size=48)
    files = sorted(p.name for p in heads.iterdir() if p.name.endswith(".nii.gz"))
    pipeline, why = propose(heads, files)
    assert pipeline == "t1-linear" and "as scanners write them" in why
    stripped = tmp_path / "stripped"
    rng = np.random.default_rng(0)
    for i, size in enumerate((30, 34, 38)):  # different grids: only the background tells
        data = np.zeros((size,) * 3, "f4")
        data[8:-8, 8:-8, 8:-8] = rng.random((size - 16,) * 3) + 1
        write_nifti(stripped / f"s{i}.nii.gz", data)
    pipeline, why = propose(stripped, [f"s{i}.nii.gz" for i in range(3)])
    assert pipeline == "minimal" and "skull-stripped" in why
    registered = tmp_path / "registered"
    for i in range(3):
        write_nifti(registered / f"r{i}.nii.gz", rng.random((20, 20, 20)).astype("f4") + 1)
    pipeline, why = propose(registered, [f"r{i}.nii.gz" for i in range(3)])
    assert pipeline == "minimal" and "one RAS grid" in why
