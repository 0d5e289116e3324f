"""`citab ingest` and `citab info` on well-formed input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.helpers import (
    SHAPE,
    SUBJECTS,
    assert_user_error,
    ingest,
    read_rows,
    run,
    tree_hash,
    write_nifti,
    write_rows,
)


def subjects_of(project: Path, cohort: str) -> list[dict[str, str]]:
    with open(project / "cohorts" / cohort / "subjects.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_three_cohorts_listed_by_info(ingested_dir: Path):
    result = run("info", "--project", ingested_dir)
    assert result.exit_code == 0, result.output
    for cohort in ("adni", "nacc", "aibl"):
        assert cohort in result.output
        manifest = json.loads((ingested_dir / "cohorts" / cohort / "manifest.json").read_text())
        assert manifest["subjects"] == SUBJECTS
        assert sum(manifest["splits"].values()) == SUBJECTS
        assert set(manifest["splits"]) == {"train", "val", "test"}


def test_layout_and_contents(ingested_dir: Path):
    cohort = ingested_dir / "cohorts" / "nacc"
    assert sorted(p.name for p in cohort.iterdir()) == [
        "images.npy",
        "manifest.json",
        "qc.png",
        "subjects.csv",
        "tabular.safetensors",
        "truth.csv",  # the cohort came from citab synth: its latents, for the probe's oracle
    ]
    images = np.load(cohort / "images.npy", mmap_mode="r")
    assert images.shape == (SUBJECTS, SHAPE, SHAPE, SHAPE) and images.dtype == np.float16
    assert np.isfinite(images).all()
    tab = load_file(str(cohort / "tabular.safetensors"))["values"]
    manifest = json.loads((cohort / "manifest.json").read_text())
    assert tab.shape == (SUBJECTS, len(manifest["columns"])) and tab.dtype == np.float32
    names = [c["name"] for c in manifest["columns"]]
    # NACC's per-column codes never survive as values: 88/95-98 become NaN, not numbers.
    mmse = tab[:, names.index("NACCMMSE")]
    assert np.nanmax(mmse) <= 30
    trail = tab[:, names.index("TRAILB")]
    assert np.nanmax(trail) <= 300
    sex = tab[:, names.index("SEX")]
    assert set(np.unique(sex[~np.isnan(sex)])) <= {0.0, 1.0}
    assert (ingested_dir / "schemas" / "nacc.yaml").is_file()
    assert (ingested_dir / "citab.yaml").is_file()
    assert manifest["preprocessing"]["pipeline"] == "minimal"  # the schema synth wrote says so
    assert set(manifest["qc"]) == set(read_rows(cohort / "subjects.csv")[i]["subject"]
                                       for i in range(SUBJECTS))  # fmt: skip
    assert all(0 < q["brain_fraction"] < 1 for q in manifest["qc"].values())


def test_column_statistics_use_the_train_split_only(ingested_dir: Path):
    cohort = ingested_dir / "cohorts" / "adni"
    manifest = json.loads((cohort / "manifest.json").read_text())
    tab = load_file(str(cohort / "tabular.safetensors"))["values"]
    train = np.array([s["split"] == "train" for s in subjects_of(ingested_dir, "adni")])
    names = [c["name"] for c in manifest["columns"]]
    j = names.index("MMSE")
    stats = manifest["columns"][j]["train_stats"]
    assert stats["mean"] == pytest.approx(float(np.nanmean(tab[train, j])), rel=1e-6)
    assert stats["n"] == int(train.sum())


def test_test_split_values_do_not_move_the_statistics(
    raw: Path, ingested_dir: Path, tmp_path: Path
):
    held_out = {s["subject"] for s in subjects_of(ingested_dir, "adni") if s["split"] != "train"}
    rows = read_rows(raw / "adni.csv")
    for r in rows:
        if r["PTID"] in held_out:
            r["MMSE"] = "0"
    write_rows(raw / "adni.csv", rows)
    result = ingest(raw, "adni", tmp_path / "p", "--shape", SHAPE)
    assert result.exit_code == 0, result.output

    def mmse_stats(project: Path) -> dict:
        manifest = json.loads((project / "cohorts/adni/manifest.json").read_text())
        return next(c for c in manifest["columns"] if c["name"] == "MMSE")["train_stats"]

    assert mmse_stats(tmp_path / "p") == mmse_stats(ingested_dir)


def test_drop_columns_never_reach_the_project(ingested_dir: Path, raw_dir: Path):
    dates = {r["EXAMDATE"] for r in read_rows(raw_dir / "adni.csv")}
    births = {"/" + r["PTDOB"].lstrip("/") for r in read_rows(raw_dir / "aibl.csv")}
    blob = b"".join(
        p.read_bytes() for p in ingested_dir.rglob("*") if p.is_file() and p.suffix != ".npy"
    )
    assert not any(d.encode() in blob for d in dates)
    assert not any(b.encode() in blob for b in births)
    assert b"EXAMDATE" not in b"".join(p.read_bytes() for p in ingested_dir.rglob("*.json"))


def test_baseline_visit_and_labels(ingested_dir: Path, raw_dir: Path):
    rows = read_rows(raw_dir / "adni.csv")
    baseline = {r["PTID"]: r for r in rows if r["VISCODE"] == "bl"}
    mapping = {"CN": "CN", "MCI": "MCI", "Dementia": "AD", "": ""}
    for s in subjects_of(ingested_dir, "adni"):
        assert s["label"] == mapping[baseline[s["subject"]]["DX"]]
        assert baseline[s["subject"]]["IMAGEUID"] in s["image"]


def test_unmapped_labels_kept_unlabelled(raw: Path, tmp_path: Path):
    rows = read_rows(raw / "aibl.csv")
    first = next(r for r in rows if r["VISCODE"] == "bl")
    first["DXCURREN"] = "7"
    write_rows(raw / "aibl.csv", rows)
    result = ingest(raw, "aibl", tmp_path / "p", "--shape", SHAPE)
    assert result.exit_code == 0, result.output
    assert "DXCURREN = '7'" in result.output and "unlabelled" in result.output
    stored = {s["subject"]: s for s in subjects_of(tmp_path / "p", "aibl")}
    assert stored[first["RID"]]["label"] == ""


def test_dry_run_writes_nothing(raw_dir: Path, tmp_path: Path):
    target = tmp_path / "p"
    result = run(
        "ingest",
        raw_dir / "adni.csv",
        "--images",
        raw_dir / "adni_mri",
        "--project",
        target,
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.output and "train" in result.output
    assert not target.exists()


def test_reingest_replaces_cohort_and_keeps_others(project: Path, raw_dir: Path):
    nacc_before = tree_hash(project / "cohorts" / "nacc")
    result = ingest(raw_dir, "adni", project)
    assert result.exit_code == 0, result.output
    assert tree_hash(project / "cohorts" / "nacc") == nacc_before
    assert sorted(p.name for p in (project / "cohorts").iterdir()) == ["adni", "aibl", "nacc"]


def test_row_order_does_not_change_splits(raw: Path, tmp_path: Path, ingested_dir: Path):
    lines = (raw / "adni.csv").read_text().splitlines()
    (raw / "adni.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    result = ingest(raw, "adni", tmp_path / "p", "--shape", SHAPE)
    assert result.exit_code == 0, result.output
    original = {s["subject"]: s["split"] for s in subjects_of(ingested_dir, "adni")}
    shuffled = {s["subject"]: s["split"] for s in subjects_of(tmp_path / "p", "adni")}
    assert original == shuffled


def test_parallel_workers_match_serial(raw_dir: Path, ingested_dir: Path, tmp_path: Path):
    result = ingest(raw_dir, "aibl", tmp_path / "p", "--shape", SHAPE, "--workers", 2)
    assert result.exit_code == 0, result.output
    serial = np.load(ingested_dir / "cohorts/aibl/images.npy")
    parallel = np.load(tmp_path / "p/cohorts/aibl/images.npy")
    assert np.array_equal(serial, parallel)


def _tiny_cohort(root: Path, layout: str) -> tuple[Path, Path]:
    """A 4-subject cohort whose images are found by `layout`: column or bids."""
    rng = np.random.default_rng(1)
    images = root / "mri"
    rows = []
    for i in range(4):
        volume = rng.random((20, 20, 20)).astype(np.float32)
        volume[5:15, 5:15, 5:15] += 2
        rel = f"scans/s{i}.nii.gz" if layout == "column" else f"sub-S{i}/anat/sub-S{i}_T1w.nii.gz"
        write_nifti(images / rel, volume)
        rows.append(f"S{i},{60 + i},{['yes', 'no'][i % 2]},{rel}")
    csv_path = root / "mine.csv"
    csv_path.write_text("ID,AGE,IMPAIRED,PATH\n" + "\n".join(rows) + "\n")
    image = "{column: PATH}" if layout == "column" else "{bids: true}"
    schema = root / "mine.yaml"
    schema.write_text(
        f"cohort: mine\nsubject: ID\nimage: {image}\n"
        "label: {column: IMPAIRED, classes: {'yes': impaired, 'no': normal}}\n"
        "columns:\n  AGE: {type: numeric, description: Age in years, unit: years}\n"
    )
    return csv_path, schema


@pytest.mark.parametrize("layout", ["column", "bids"])
def test_image_by_column_and_bids(tmp_path: Path, layout: str):
    csv_path, schema = _tiny_cohort(tmp_path, layout)
    result = run(
        "ingest",
        csv_path,
        "--images",
        tmp_path / "mri",
        "--schema",
        schema,
        "--project",
        tmp_path / "p",
        "--shape",
        16,
        "--workers",
        1,
    )
    assert result.exit_code == 0, result.output
    stored = subjects_of(tmp_path / "p", "mine")
    assert [s["subject"] for s in stored] == ["S0", "S1", "S2", "S3"]
    assert {s["label"] for s in stored} == {"impaired", "normal"}
    manifest = json.loads((tmp_path / "p/cohorts/mine/manifest.json").read_text())
    assert manifest["columns"][0]["normalize"] == "zscore"


def test_pattern_matching_two_files_lists_candidates(raw: Path, tmp_path: Path):
    path = next((raw / "adni_mri").rglob("*.nii.gz"))
    shutil.copy(path, path.with_name("copy_" + path.name))
    result = ingest(raw, "adni", tmp_path / "p")
    assert_user_error(result, "matches 2 image files", "copy_")


def test_real_non_ras_image_ingests(tmp_path: Path):
    """nibabel's own test scan: 2 mm, LAS orientation."""
    source = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    assert nib.aff2axcodes(nib.load(source).affine) != ("R", "A", "S")
    images = tmp_path / "mri"
    images.mkdir()
    shutil.copy(source, images / "anatomical.nii")
    (tmp_path / "real.csv").write_text("subject,file\nanat01,anatomical.nii\n")
    (tmp_path / "real.yaml").write_text(
        "cohort: real\nsubject: subject\nimage: {column: file}\ncolumns:\n"
        "  age: {type: numeric, description: age in years, required: false}\n"
    )
    result = run(
        "ingest",
        tmp_path / "real.csv",
        "--images",
        images,
        "--schema",
        tmp_path / "real.yaml",
        "--project",
        tmp_path / "p",
        "--shape",
        32,
        "--workers",
        1,
    )
    assert result.exit_code == 0, result.output
    volume = np.load(tmp_path / "p/cohorts/real/images.npy")[0].astype(np.float32)
    assert volume.shape == (32, 32, 32)
    inside = volume > volume.min()
    assert abs(volume[inside].mean()) < 0.5


def test_coarse_scans_on_a_fine_grid_are_flagged(raw_dir: Path, tmp_path: Path):
    # synthetic scans of 24 voxels span 192 mm: 8 mm voxels, stored here at 3 mm
    result = ingest(raw_dir, "aibl", tmp_path / "p", "--shape", 64)
    assert result.exit_code == 0, result.output
    assert "much coarser" in result.output and "--shape 24" in result.output
    manifest = json.loads((tmp_path / "p/cohorts/aibl/manifest.json").read_text())
    assert any("much coarser" in w for w in manifest["warnings"])


def test_an_optional_column_the_csv_lacks_is_absent_not_missing(
    raw_dir: Path, tmp_path: Path, ingested_dir: Path
):
    schema = tmp_path / "adni.yaml"
    schema.write_text(
        (raw_dir / "adni.yaml").read_text()
        + "  EXTRA: {type: numeric, description: A score this export lacks, required: false}\n"
    )
    result = ingest(raw_dir, "adni", tmp_path / "p", "--shape", SHAPE, "--schema", schema)
    assert result.exit_code == 0, result.output
    assert "optional column 'EXTRA' is not in the CSV: left out" in " ".join(result.output.split())
    manifest = json.loads((tmp_path / "p/cohorts/adni/manifest.json").read_text())
    names = [c["name"] for c in manifest["columns"]]
    assert "EXTRA" not in names and manifest["absent_columns"] == ["EXTRA"]
    values = load_file(str(tmp_path / "p/cohorts/adni/tabular.safetensors"))["values"]
    assert values.shape[1] == len(names)
    # the same columns as the cohort ingested with a schema that never had the extra column
    plain = json.loads((ingested_dir / "cohorts/adni/manifest.json").read_text())["columns"]
    assert [c["name"] for c in plain] == names


def test_a_split_lacking_a_class_is_a_warning(raw: Path, tmp_path: Path):
    rows = read_rows(raw / "adni.csv")
    keep = sorted({r["PTID"] for r in rows if r["DX"] == "Dementia"})[:2]
    for r in rows:
        if r["DX"] == "Dementia" and r["PTID"] not in keep:
            r["DX"] = "MCI"
    write_rows(raw / "adni.csv", rows)
    result = ingest(raw, "adni", tmp_path / "p", "--shape", SHAPE)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "the val split has no subject of class AD (2 labelled in all)" in text
    manifest = json.loads((tmp_path / "p/cohorts/adni/manifest.json").read_text())
    assert any("val split has no subject of class AD" in w for w in manifest["warnings"])
