"""`citab synth`: realistic raw files, deterministic per seed."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.helpers import SHAPE, SUBJECTS, assert_user_error, read_rows, run, tree_hash


def test_layout_and_truth(raw_dir: Path):
    for cohort in ("adni", "nacc", "aibl"):
        assert (raw_dir / f"{cohort}.csv").is_file()
        assert len(list((raw_dir / f"{cohort}_mri").rglob("*.nii.gz"))) == SUBJECTS
    truth = json.loads((raw_dir / "truth.json").read_text())
    for entry in truth["cohorts"].values():
        assert 0.5 < entry["ceiling_accuracy"] <= 1.0
        assert sum(entry["class_counts"].values()) == SUBJECTS
    rows = read_rows(raw_dir / "truth.csv")
    assert len(rows) == 3 * SUBJECTS
    assert {"severity", "diagnosis", "severity_image", "severity_tabular"} <= set(rows[0])


def test_each_cohort_speaks_its_own_dialect(raw_dir: Path):
    headers = {c: list(read_rows(raw_dir / f"{c}.csv")[0]) for c in ("adni", "nacc", "aibl")}
    assert {"PTID", "VISCODE", "DX", "MMSE", "IMAGEUID"} <= set(headers["adni"])
    assert {"NACCID", "NACCVNUM", "NACCUDSD", "NACCMMSE"} <= set(headers["nacc"])
    assert {"RID", "DXCURREN", "MMSCORE", "APGEN1", "APGEN2", "PTDOB"} <= set(headers["aibl"])
    adni = read_rows(raw_dir / "adni.csv")
    assert {r["PTGENDER"] for r in adni} == {"Male", "Female"}
    nacc = read_rows(raw_dir / "nacc.csv")
    assert {r["SEX"] for r in nacc} == {"1", "2"}
    assert "-4" in {r["NACCMMSE"] for r in nacc} | {r["MOCATOTS"] for r in nacc}
    assert len(adni) > SUBJECTS  # follow-up visits too


def test_scans_differ_in_orientation_and_storage(raw_dir: Path):
    adni = nib.load(next((raw_dir / "adni_mri").rglob("*.nii.gz")))
    nacc = nib.load(next((raw_dir / "nacc_mri").rglob("*.nii.gz")))
    assert adni.shape == (SHAPE, SHAPE, SHAPE)
    assert nib.aff2axcodes(adni.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(nacc.affine) == ("L", "A", "S")
    assert adni.get_data_dtype() == np.int16


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path):
    args = ("--cohorts", "aibl", "--subjects", 6, "--shape", 16)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run("synth", tmp_path / name, *args, "--seed", seed).exit_code == 0
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert tree_hash(tmp_path / "a") != tree_hash(tmp_path / "c")


def test_choosing_fewer_cohorts_keeps_the_others_identical(tmp_path: Path):
    run("synth", tmp_path / "one", "--cohorts", "nacc", "--subjects", 6, "--shape", 16)
    run("synth", tmp_path / "two", "--cohorts", "adni,nacc", "--subjects", 6, "--shape", 16)
    assert (tmp_path / "one/nacc.csv").read_bytes() == (tmp_path / "two/nacc.csv").read_bytes()


def test_atrophy_grows_with_severity():
    """More image-visible severity: more dark (CSF-like) voxels around the ventricles and a
    darker centre, monotonically."""
    from citab_cli.core.synth import anatomy

    grid = anatomy.Grid(32)
    centre = (slice(10, 22),) * 3
    dark, mean = [], []
    for atrophy in (0.0, 1.0, 2.0, 3.0):
        volume = anatomy.brain(
            grid, np.random.default_rng(0), atrophy=atrophy, age=70, female=False
        )
        dark.append(int((volume[centre] < 0.45).sum()))
        mean.append(float(volume[centre].mean()))
    assert dark == sorted(dark) and dark[-1] > 1.5 * dark[0]
    assert mean == sorted(mean, reverse=True)


def test_refuses_to_overwrite(tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert_user_error(run("synth", tmp_path / "busy"), "not empty")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert_user_error(
        run("synth", tmp_path / "x", "--cohorts", "oasis"), "unknown synthetic cohort"
    )


def test_truth_names_drivers_and_non_drivers_among_the_schema_columns(raw_dir: Path):
    from citab_cli.core.schema.cohort import load_schema, shipped_schema_dir

    truth = json.loads((raw_dir / "truth.json").read_text())
    for cohort, entry in truth["cohorts"].items():
        columns = set(load_schema(shipped_schema_dir() / f"{cohort}.yaml").columns)
        assert entry["drivers"] and entry["non_drivers"]
        assert set(entry["drivers"]) <= columns and set(entry["non_drivers"]) <= columns
        assert not set(entry["drivers"]) & set(entry["non_drivers"])


def test_independent_wording_rewords_the_headers_and_nothing_else(tmp_path: Path):
    """Same values as shared wording but NACC's education (a level, not years); every shared
    concept described differently in each cohort; and the cohorts still ingest."""
    import yaml

    from citab_cli.core.synth import generate
    from citab_cli.core.synth.wording import CONCEPTS

    kinds = ("shared", "independent")
    for kind in kinds:
        generate(tmp_path / kind, ["adni", "nacc", "aibl"], 8, 16, seed=1, wording=kind)
    shared, independent = (tmp_path / k for k in kinds)
    for name in ("adni", "aibl"):
        assert (shared / f"{name}.csv").read_bytes() == (independent / f"{name}.csv").read_bytes()
    before, after = read_rows(shared / "nacc.csv"), read_rows(independent / "nacc.csv")
    for a, b in zip(before, after, strict=True):
        assert {k for k in a if a[k] != b[k]} <= {"EDUC"}
        years = float(a["EDUC"])
        level = str(1 + sum(years > bound for bound in (8, 12, 15, 17)))
        assert b["EDUC"] == ("9" if a["EDUC"] == "99" else level)
    texts: dict[str, set[str]] = {}
    for name, columns in CONCEPTS.items():
        ours = yaml.safe_load((shared / f"{name}.yaml").read_text())["columns"]
        theirs = yaml.safe_load((independent / f"{name}.yaml").read_text())["columns"]
        assert ours.keys() == theirs.keys()
        for column, concept in columns.items():
            assert theirs[column]["description"] != ours[column]["description"]
            texts.setdefault(concept, set()).add(theirs[column]["description"])
    assert all(len(t) == sum(concept in c.values() for c in CONCEPTS.values())
               for concept, t in texts.items())  # fmt: skip
    project = tmp_path / "project"
    for name in ("adni", "nacc", "aibl"):
        result = run("ingest", independent / f"{name}.csv", "--images",
                     independent / f"{name}_mri", "--project", project, "--workers", 1)  # fmt: skip
        assert result.exit_code == 0, result.output
    manifest = json.loads((project / "cohorts/nacc/manifest.json").read_text())
    educ = next(c for c in manifest["columns"] if c["name"] == "EDUC")
    assert educ["type"] == "categorical" and "bachelor's degree" in educ["levels"]
    assert json.loads((independent / "truth.json").read_text())["wording"] == "independent"
