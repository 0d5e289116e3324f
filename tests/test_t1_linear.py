"""Real scans in: whole-head synthetic scans and nibabel's own test image through t1-linear,
DICOM series, the preprocessing cache, QC figures and outliers, bad scans."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from citab_cli.core.errors import CitabError
from citab_cli.core.scans import pipelines, qc
from citab_cli.core.scans.preprocess import load_volume
from citab_cli.core.settings import ImageSettings, mni_grid
from tests.helpers import assert_user_error, raw_subject, read_rows, run, write_nifti, write_rows

GRID = 40


def mni_settings(size: int = GRID) -> ImageSettings:
    spacing, affine = mni_grid((size,) * 3)
    return ImageSettings(shape=(size,) * 3, spacing=spacing, affine=affine, space="mni152")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_a_whole_head_scan_through_t1_linear(tmp_path: Path):
    """Skull, scalp, neck, a random pose and storage orientation: the brain is found (Dice
    with the true mask >= 0.9) and lands on the MNI template."""
    from citab_cli.core.scans.t1_linear import t1_linear

    path, truth = raw_subject(tmp_path, 3)
    assert nib.aff2axcodes(nib.load(path).affine) != ("R", "A", "S")  # not stored as RAS
    result = t1_linear(load_volume(path), path, mni_settings())
    true_mask = np.asarray(nib.as_closest_canonical(truth).dataobj) > 0
    assert _dice(result.native_mask, true_mask) >= 0.9
    assert result.qc["template_correlation"] > 0.7
    assert 900 < result.qc["brain_ml"] < 2200
    assert result.volume.shape == (GRID,) * 3 and result.volume.dtype == np.float16
    assert set(result.seconds) == {"brain_extraction", "n4", "registration", "resample"}


@pytest.mark.slow
def test_t1_linear_gives_the_same_volume_whatever_the_thread_count(tmp_path: Path):
    """Registration samples voxels at random and sums over threads: seeded and on one ITK
    thread, and brain extraction on one PyTorch thread, the same scan gives the same bytes
    with 1 or 2 threads in the process. (The default suite checks the same across processes:
    tests/test_ingest_cluster.py, this process's threads against one-thread Dask workers.)"""
    import torch

    from citab_cli.core.scans.t1_linear import t1_linear

    path, _ = raw_subject(tmp_path, 5)
    threads = torch.get_num_threads()
    volumes = []
    try:
        for count in (2, 1):
            torch.set_num_threads(count)
            volumes.append(t1_linear(load_volume(path), path, mni_settings()).volume.tobytes())
    finally:
        torch.set_num_threads(threads)
    assert volumes[0] == volumes[1]


@pytest.mark.slow
def test_the_skull_does_not_cost_registration_quality(tmp_path: Path):
    """The same subject, as a whole head at a random pose and as a skull-less brain: after
    t1-linear the head correlates with the template at least as well as the brain did."""
    from citab_cli.core.scans.t1_linear import t1_linear

    head_path, _ = raw_subject(tmp_path, 5)
    brain_path, _ = raw_subject(tmp_path, 5, raw=False)
    settings = mni_settings()
    head = t1_linear(load_volume(head_path), head_path, settings).qc["template_correlation"]
    brain = t1_linear(load_volume(brain_path), brain_path, settings).qc["template_correlation"]
    assert head >= brain - 0.02, (head, brain)


def test_nibabels_own_partial_scan_is_refused_clearly(tmp_path: Path):
    """nibabel's test image is a 66 x 82 x 50 mm slab of a head (LAS, 2 mm): t1-linear says
    so, instead of storing a garbage volume (the minimal pipeline ingests it: test_ingest)."""
    import nibabel.tests

    path = Path(nibabel.tests.__file__).parent / "data" / "anatomical.nii"
    job = pipelines.Job("t1-linear", mni_settings())
    with pytest.raises(CitabError, match=r"anatomical.nii: covers only 50 mm .* a slab"):
        pipelines.preprocess_file(path, job)


def test_a_localiser_is_refused_before_any_work(tmp_path: Path):
    slices = np.random.default_rng(0).random((128, 128, 3)).astype("f4")
    path = write_nifti(tmp_path / "loc.nii.gz", slices, np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(CitabError, match="covers only 6 mm.*a localiser or a slab"):
        pipelines.preprocess_file(path, pipelines.Job("t1-linear", mni_settings()))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["noise", "phantom"])
def test_scans_without_a_brain_are_refused(tmp_path: Path, kind: str):
    rng = np.random.default_rng(1)
    if kind == "noise":
        data = rng.random((96, 96, 96)).astype("f4") * 1000
    else:
        ijk = np.indices((96, 96, 96)) - 48
        data = ((ijk**2).sum(0) < 30**2).astype("f4") * 800 + rng.normal(0, 5, (96,) * 3)
    path = write_nifti(tmp_path / f"{kind}.nii.gz", data.astype("f4"), np.diag([2.0, 2.0, 2.0, 1]))
    with pytest.raises(CitabError, match="brain extraction|registration to MNI152 failed"):
        pipelines.preprocess_file(path, pipelines.Job("t1-linear", mni_settings()))


def _fake_t1(monkeypatch, calls: list):
    """t1-linear without its networks: a fixed volume, and a count of the scans it ran on."""
    from citab_cli.core.scans import t1_linear

    def fake(volume, path, settings):
        calls.append(Path(path).name)
        out = np.full(settings.shape, float(len(calls)), np.float16)
        return t1_linear.T1Result(out, np.ones((2, 2, 2), bool), np.eye(4),
                                  {"brain_ml": 1200.0 + len(calls), "template_correlation": 0.8,
                                   "brain_fraction": 0.3}, {"brain_extraction": 0.1})  # fmt: skip

    monkeypatch.setattr(t1_linear, "t1_linear", fake)


def _cohort(root: Path, n: int, bad: int | None = None) -> tuple[Path, Path]:
    images = root / "mri"
    rows = []
    for i in range(n):
        data = np.random.default_rng(i).random((40, 40, 40)).astype("f4") + 1
        if i == bad:
            data = np.random.default_rng(i).random((40, 40, 2)).astype("f4") + 1  # a localiser
        write_nifti(images / f"s{i}.nii.gz", data, np.diag([3.0, 3.0, 3.0, 1.0]))
        rows.append({"ID": f"s{i}", "AGE": str(60 + i), "DX": "CN" if i % 2 else "AD",
                     "IMG": f"s{i}.nii.gz"})  # fmt: skip
    write_rows(root / "toy.csv", rows)
    schema = root / "toy.yaml"
    schema.write_text(
        "cohort: toy\nsubject: ID\nimage: {column: IMG, preprocess: t1-linear}\n"
        "label: {column: DX, classes: {CN: CN, AD: AD}}\n"
        "columns:\n  AGE: {type: numeric, description: Age in years, range: [40, 100], "
        "covariate: age}\n"
    )
    return root / "toy.csv", schema


def _ingest(csv_path: Path, schema: Path, project: Path, *extra):
    return run("ingest", csv_path, "--images", csv_path.parent / "mri", "--schema", schema,
               "--shape", 24, "--workers", 1, "--project", project, *extra)  # fmt: skip


def test_reingest_reuses_every_finished_scan(tmp_path: Path, monkeypatch):
    calls: list = []
    _fake_t1(monkeypatch, calls)
    csv_path, schema = _cohort(tmp_path / "raw", 6)
    project = tmp_path / "project"
    assert _ingest(csv_path, schema, project).exit_code == 0
    assert len(calls) == 6
    settings = json.loads(
        json.dumps(__import__("yaml").safe_load((project / "citab.yaml").read_text()))
    )
    assert settings["image"]["space"] == "mni152" and len(settings["image"]["affine"]) == 4
    # a new schema (another description) re-ingests without running the pipeline again
    schema.write_text(schema.read_text().replace("Age in years", "Age at the visit in years"))
    result = _ingest(csv_path, schema, project)
    assert result.exit_code == 0, result.output
    assert len(calls) == 6
    manifest = json.loads((project / "cohorts/toy/manifest.json").read_text())
    assert manifest["preprocessing"]["pipeline"] == "t1-linear"
    assert manifest["preprocessing"]["version"].startswith("t1-linear")
    assert set(manifest["qc"]) == {f"s{i}" for i in range(6)}
    assert (project / "cohorts/toy/qc.png").is_file()


def test_a_bad_scan_stops_or_is_skipped_and_listed(tmp_path: Path, monkeypatch):
    _fake_t1(monkeypatch, [])
    csv_path, schema = _cohort(tmp_path / "raw", 6, bad=2)
    project = tmp_path / "project"
    assert_user_error(_ingest(csv_path, schema, project), "line 4 (subject s2)", "localiser")
    # nothing of a project is left, only the scans finished before the bad one, for next time
    assert sorted(p.name for p in project.iterdir()) == ["cache"]
    result = _ingest(csv_path, schema, project, "--on-bad-scan", "skip")
    assert result.exit_code == 0, result.output
    assert "scan skipped (--on-bad-scan skip)" in " ".join(result.output.split())
    manifest = json.loads((project / "cohorts/toy/manifest.json").read_text())
    assert manifest["subjects"] == 5 and manifest["rows"]["dropped"] == {"bad scan": 1}
    images = np.load(project / "cohorts/toy/images.npy", mmap_mode="r")
    assert images.shape[0] == 5


def test_a_pipeline_that_does_not_match_the_project_grid_is_refused(tmp_path: Path, monkeypatch):
    _fake_t1(monkeypatch, [])
    csv_path, schema = _cohort(tmp_path / "raw", 6)
    project = tmp_path / "project"
    assert _ingest(csv_path, schema, project, "--preprocess", "minimal").exit_code == 0
    assert_user_error(_ingest(csv_path, schema, project), "holds minimal scans", "--preprocess")


def test_qc_outliers_are_robust():
    subjects = [f"s{i}" for i in range(12)]
    figures = [{"brain_ml": 1200 + 10 * i, "template_correlation": 0.82 + 0.002 * i,
                "brain_fraction": 0.3} for i in range(12)]  # fmt: skip
    figures[4] = {"brain_ml": 1240, "template_correlation": 0.41, "brain_fraction": 0.3}
    figures[7] = {"brain_ml": 2900, "template_correlation": 0.83, "brain_fraction": 0.3}
    flagged = qc.outliers(subjects, figures)
    assert flagged == {"s4": ["template_correlation"], "s7": ["brain_ml"]}
    text = qc.describe("s4", flagged["s4"], figures[4], figures, "cohorts/adni/qc.png")
    assert "correlation with the MNI template 0.41" in text and "cohorts/adni/qc.png" in text


def test_dicom_series_are_converted_once_and_the_t1_series_is_chosen(tmp_path: Path):
    from citab_cli.core.scans import dicom
    from tests.dicom_series import write_series

    volume = (np.random.default_rng(0).random((20, 24, 16)) * 1000).astype(np.int16)
    folder = tmp_path / "dicom" / "s0"
    write_series(folder / "a", volume, "MPRAGE sagittal", 3)
    write_series(folder / "b", volume[:, :, :2], "localizer", 1)
    cache = tmp_path / "cache"
    converted = dicom.to_nifti(folder, cache)
    image = nib.load(converted)
    assert image.shape == (20, 24, 16)
    np.testing.assert_array_equal(np.asarray(image.dataobj).astype(np.int16)[::-1, :, :].shape,
                                  volume.shape)  # fmt: skip
    stamp = converted.stat().st_mtime_ns
    assert dicom.to_nifti(folder, cache) == converted and converted.stat().st_mtime_ns == stamp
    assert dicom.to_nifti(folder, cache, wanted="localizer") != converted  # by description
    assert dicom.to_nifti(folder, cache, wanted=3) == converted  # by number
    only = tmp_path / "dicom" / "s1"
    write_series(only / "loc", volume[:, :, :2], "localizer", 1)
    write_series(only / "dwi", volume[:, :, :4], "DWI b1000", 5)
    with pytest.raises(CitabError, match=r"s1: expected one T1 series, found 0 among 2"):
        dicom.to_nifti(only, cache)
    (tmp_path / "dicom" / "empty").mkdir()
    with pytest.raises(CitabError, match="no readable DICOM series"):
        dicom.to_nifti(tmp_path / "dicom" / "empty", cache)


def test_a_cohort_of_dicom_folders_ingests(tmp_path: Path):
    from tests.dicom_series import write_series

    rows = []
    for i in range(6):
        volume = np.zeros((24, 24, 20), np.int16)
        volume[4:20, 5:19, 3:17] = 600 + 40 * i
        write_series(tmp_path / "mri" / f"P{i}" / "t1", volume, "T1 MPRAGE", 2, spacing=4.0)
        rows.append({"ID": f"P{i}", "AGE": str(60 + i), "DICOM": f"P{i}"})
    write_rows(tmp_path / "dcm.csv", rows)
    (tmp_path / "dcm.yaml").write_text(
        "cohort: dcm\nsubject: ID\nimage: {column: DICOM, preprocess: minimal}\n"
        "columns:\n  AGE: {type: numeric, description: Age in years, range: [40, 100]}\n"
    )
    result = run("ingest", tmp_path / "dcm.csv", "--images", tmp_path / "mri", "--schema",
                 tmp_path / "dcm.yaml", "--shape", 16, "--spacing", 6, "--workers", 1,
                 "--project", tmp_path / "project")  # fmt: skip
    assert result.exit_code == 0, result.output
    subjects = (tmp_path / "project/cohorts/dcm/subjects.csv").read_text()
    assert "P3" in subjects and len(subjects.splitlines()) == 7


def test_carrying_out_a_plan_leaves_it_as_decided(tmp_path: Path, monkeypatch):
    """A bad scan skipped shrinks what is stored, not the plan; a split file given to the
    plan is cut to the rows kept."""
    from citab_cli.core.data import ingest
    from citab_cli.core.data.ingest_execute import execute

    _fake_t1(monkeypatch, [])
    csv_path, schema = _cohort(tmp_path / "raw", 6, bad=2)
    splits = tmp_path / "splits.csv"
    chosen = ("train", "train", "val", "test", "train", "test")
    splits.write_text("subject,split\n" + "".join(f"s{i},{chosen[i]}\n" for i in range(6)))
    plan = ingest.plan(csv_path, csv_path.parent / "mri", tmp_path / "project",
                       schema_file=schema, on_bad_scan="skip", shape=(24,) * 3,
                       splits_file=splits)  # fmt: skip
    before = (list(plan.table.subjects), list(plan.images), list(plan.warnings))
    summary = execute(plan)
    assert (list(plan.table.subjects), list(plan.images), list(plan.warnings)) == before
    assert summary.kept == 5 and any("scan skipped" in w for w in summary.warnings)
    rows = {
        r["subject"]: r["split"] for r in read_rows(tmp_path / "project/cohorts/toy/subjects.csv")
    }
    assert "s2" not in rows and rows["s3"] == "test" and rows["s5"] == "test"
