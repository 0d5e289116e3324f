"""Bad input to `citab ingest`: one actionable line, exit 1, the project left byte-for-byte."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    assert_user_error,
    ingest,
    read_rows,
    run,
    tree_hash,
    write_nifti,
    write_rows,
)


def baseline_line(rows: list[dict[str, str]], k: int = 0) -> tuple[int, dict[str, str]]:
    """The CSV line and row of the k-th baseline visit."""
    found = [(i + 2, r) for i, r in enumerate(rows) if r["VISCODE"] == "bl"]
    return found[k]


def ingest_adni(raw: Path, project: Path, *extra: str):
    return ingest(raw, "adni", project, *extra)


def edit_cell(raw: Path, column: str, value: str, k: int = 0) -> int:
    rows = read_rows(raw / "adni.csv")
    line, row = baseline_line(rows, k)
    row[column] = value
    write_rows(raw / "adni.csv", rows)
    return line


@pytest.fixture()
def unchanged(project: Path):
    """Asserts, after the test, that the project tree is byte-for-byte what it was."""
    before = tree_hash(project)
    yield project
    assert tree_hash(project) == before


def test_missing_required_column(raw, unchanged):
    rows = read_rows(raw / "adni.csv")
    for r in rows:
        del r["MMSE"]
    write_rows(raw / "adni.csv", rows)
    assert_user_error(
        ingest_adni(raw, unchanged),
        "adni.csv",
        "missing required column 'MMSE'",
        "add it to the CSV or fix the schema",
    )


def test_text_in_numeric_column(raw, unchanged):
    line = edit_cell(raw, "MMSE", "twenty")
    assert_user_error(
        ingest_adni(raw, unchanged),
        f"line {line}",
        "column 'MMSE'",
        "'twenty'",
        "expected a number",
        "missing:",
    )


def test_value_out_of_range(raw, unchanged):
    line = edit_cell(raw, "MMSE", "31")
    assert_user_error(
        ingest_adni(raw, unchanged), f"line {line}", "column 'MMSE'", "outside the range [0, 30]"
    )


def test_unknown_categorical_level(raw, unchanged):
    line = edit_cell(raw, "PTGENDER", "F")
    assert_user_error(
        ingest_adni(raw, unchanged),
        f"line {line}",
        "column 'PTGENDER'",
        "'F' is not a known level",
        "levels:",
    )


def test_duplicate_subject(raw, unchanged):
    rows = read_rows(raw / "adni.csv")
    (line0, first), (line1, second) = baseline_line(rows, 0), baseline_line(rows, 1)
    second["PTID"] = first["PTID"]
    write_rows(raw / "adni.csv", rows)
    assert_user_error(
        ingest_adni(raw, unchanged),
        f"line {line1}",
        first["PTID"],
        f"first on line {line0}",
        "appears again",
    )


def test_missing_images_are_all_listed(raw, unchanged):
    rows = read_rows(raw / "adni.csv")
    gone = []
    for k in range(3):
        _, row = baseline_line(rows, k)
        path = next((raw / "adni_mri").rglob(f"*_I{row['IMAGEUID']}.nii.gz"))
        path.unlink()
        gone.append(row["PTID"])
    message = assert_user_error(
        ingest_adni(raw, unchanged), "3 image(s) not found", "--on-missing-image skip"
    )
    assert all(subject in message for subject in gone)


def test_missing_images_skipped_on_request(raw, project):
    rows = read_rows(raw / "adni.csv")
    _, row = baseline_line(rows, 0)
    next((raw / "adni_mri").rglob(f"*_I{row['IMAGEUID']}.nii.gz")).unlink()
    result = ingest_adni(raw, project, "--on-missing-image", "skip")
    assert result.exit_code == 0, result.output
    assert "image not found" in result.output
    subjects = read_rows(project / "cohorts/adni/subjects.csv")
    assert row["PTID"] not in {s["subject"] for s in subjects}
    assert len(subjects) == 15


def test_truncated_gzip(raw, unchanged):
    line, row = baseline_line(read_rows(raw / "adni.csv"), 2)
    path = next((raw / "adni_mri").rglob(f"*_I{row['IMAGEUID']}.nii.gz"))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert_user_error(
        ingest_adni(raw, unchanged),
        f"adni.csv: line {line} (subject {row['PTID']})",
        path.name,
    )
    assert_user_error(ingest_adni(raw, unchanged), path.name, "cannot read this NIfTI", "re-export")


def test_not_gzip(raw, unchanged):
    path = next((raw / "adni_mri").rglob("*.nii.gz"))
    path.write_bytes(b"this is not a gzip file at all" * 20)
    assert_user_error(ingest_adni(raw, unchanged), path.name, "cannot read this NIfTI")


def _overwrite_with(raw: Path, data: np.ndarray) -> Path:
    path = next((raw / "adni_mri").rglob("*.nii.gz"))
    write_nifti(path, data)
    return path


def test_2d_image(raw, unchanged):
    path = _overwrite_with(raw, np.random.default_rng(0).random((24, 24)).astype(np.float32))
    assert_user_error(ingest_adni(raw, unchanged), path.name, "not a 3D volume")


def test_4d_image_with_several_volumes(raw, unchanged):
    path = _overwrite_with(raw, np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32))
    assert_user_error(ingest_adni(raw, unchanged), path.name, "holds 3 volumes")


def test_image_of_nans(raw, unchanged):
    path = _overwrite_with(raw, np.full((16, 16, 16), np.nan, dtype=np.float32))
    assert_user_error(ingest_adni(raw, unchanged), path.name, "NaN or infinite")


def test_empty_volume(raw, unchanged):
    path = _overwrite_with(raw, np.zeros((16, 16, 16), dtype=np.float32))
    assert_user_error(ingest_adni(raw, unchanged), path.name, "volume is empty")


def test_every_unreadable_image_is_counted(raw, unchanged):
    for path in list((raw / "adni_mri").rglob("*.nii.gz"))[:3]:
        path.write_bytes(b"junk")
    assert_user_error(ingest_adni(raw, unchanged), "and 2 more unreadable image(s)")


def test_symlink_escaping_images_folder(raw, unchanged, tmp_path):
    outside = write_nifti(
        tmp_path / "elsewhere" / "secret.nii.gz",
        np.random.default_rng(0).random((16, 16, 16)).astype(np.float32),
    )
    path = next((raw / "adni_mri").rglob("*.nii.gz"))
    path.unlink()
    path.symlink_to(outside)
    assert_user_error(ingest_adni(raw, unchanged), "leads outside --images", path.name)


def test_image_column_escaping_with_dotdot(raw, unchanged, tmp_path):
    schema = tmp_path / "col.yaml"
    text = (Path(__file__).parents[1] / "schemas/adni.yaml").read_text()
    image = next(line for line in text.splitlines() if line.startswith("image:"))
    schema.write_text(text.replace(image, "image: {column: IMGPATH, preprocess: minimal}"))
    rows = read_rows(raw / "adni.csv")
    for r in rows:
        r["IMGPATH"] = "../../etc/passwd"
    write_rows(raw / "adni.csv", rows)
    assert_user_error(
        ingest_adni(raw, unchanged, "--schema", str(schema)),
        "column 'IMGPATH'",
        "must be relative to --images and stay inside it",
    )


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "the CSV file is empty"),
        (b"PTID,VISCODE,DX,AGE\n", "header but no data rows"),
        (bytes(range(256)) * 40, "binary file, not a CSV"),
        (b"PTID,VISCODE\n\xff\xfe broken,bl\n", "not UTF-8 text"),
        (b'PTID,VISCODE\n"unclosed,bl\n', "malformed CSV"),
        (b"PTID,PTID\n1,2\n", "appears twice in the header"),
    ],
)
def test_unusable_csv(raw, unchanged, content, fragment):
    (raw / "adni.csv").write_bytes(content)
    assert_user_error(ingest_adni(raw, unchanged), "adni.csv", fragment)


@pytest.mark.parametrize(
    "yaml_text, fragments",
    [
        ("cohort: adni\nsubject: PTID\n  image: [unclosed\n", ["bad.yaml:", "malformed YAML"]),
        (
            "cohort: adni\nsubject: PTID\nimage: '*{PTID}*.nii'\ncolour: red\n"
            "columns:\n  AGE: {type: numeric, description: age in years}\n",
            ["bad.yaml:4", "unknown key 'colour'"],
        ),
        (
            "cohort: adni\nsubject: PTID\nimage: '*{PTID}*.nii'\n"
            "columns:\n  AGE: {type: numeric, description: age in years, rnage: [0, 1]}\n",
            ["bad.yaml:5", "unknown key 'rnage'"],
        ),
        (
            "cohort: adni\nsubject: PTID\nimage: '*{PTID}*.nii'\nsubject: RID\n"
            "columns:\n  AGE: {type: numeric, description: age in years}\n",
            ["bad.yaml:4", "'subject' appears twice"],
        ),
        ("- just\n- a list\n", ["must be a YAML mapping"]),
        (
            "cohort: adni\nimage: '*{PTID}*.nii'\n"
            "columns:\n  AGE: {type: numeric, description: age}\n",
            ["required key 'subject' is missing"],
        ),
    ],
)
def test_bad_schema_yaml(raw, unchanged, tmp_path, yaml_text, fragments):
    schema = tmp_path / "bad.yaml"
    schema.write_text(yaml_text)
    assert_user_error(ingest_adni(raw, unchanged, "--schema", str(schema)), *fragments)


def test_unknown_cohort_without_schema(raw, unchanged):
    (raw / "adni.csv").rename(raw / "mystery.csv")
    result = run(
        "ingest", raw / "mystery.csv", "--images", raw / "adni_mri", "--project", unchanged
    )
    assert_user_error(result, "no schema for cohort 'mystery'", "citab schema infer")


def test_failed_ingest_into_new_project_leaves_nothing(raw, tmp_path):
    edit_cell(raw, "MMSE", "99")
    target = tmp_path / "fresh"
    assert_user_error(ingest_adni(raw, target), "outside the range")
    assert not target.exists()


def test_failure_while_preprocessing_leaves_no_staging(raw, project):
    before = tree_hash(project)
    path = next((raw / "adni_mri").rglob("*.nii.gz"))
    path.write_bytes(gzip.compress(b"not nifti"))
    assert_user_error(ingest_adni(raw, project), "cannot read this NIfTI")
    assert tree_hash(project) == before
    assert not [p for p in (project / "cohorts").iterdir() if p.name.startswith(".")]


def test_shape_conflicting_with_project(raw, unchanged):
    assert_user_error(ingest_adni(raw, unchanged, "--shape", "32"), "stores images as (24, 24, 24)")


def test_bad_paths_and_grids(raw, tmp_path):
    target = tmp_path / "new"
    assert_user_error(
        run("ingest", raw / "nothere.csv", "--images", raw / "adni_mri", "--project", target),
        "nothere.csv: CSV file not found",
    )
    assert_user_error(
        run("ingest", raw / "adni.csv", "--images", raw / "nothere", "--project", target),
        "the --images folder does not exist",
    )
    assert_user_error(ingest_adni(raw, target, "--shape", "4"), "between 8 and 512 voxels")
    assert_user_error(ingest_adni(raw, target, "--shape", "2,3"), "one positive number or three")
    assert not target.exists()


def test_the_next_ingest_removes_what_a_killed_one_left(raw, project):
    """A SIGKILL during ingest leaves cohorts/.<cohort>.staging-*/ (up to the whole images.npy);
    the next ingest, holding the project's lock, removes it and says so; a user's own hidden
    folder without the staging mark stays."""
    left = project / "cohorts" / ".nacc.staging-k1ll3d"
    left.mkdir()
    (left / "images.npy").write_bytes(b"\0" * 4096)
    old = project / "cohorts" / ".aibl.old-x9"
    old.mkdir()
    mine = project / "cohorts" / ".notes"
    mine.mkdir()
    result = ingest_adni(raw, project)
    assert result.exit_code == 0, result.output
    assert "removed 2 folder(s) that an interrupted ingest left" in " ".join(result.output.split())
    assert not left.exists() and not old.exists() and mine.is_dir()
