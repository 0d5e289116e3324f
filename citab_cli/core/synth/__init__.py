"""`citab synth`: synthetic cohorts written the way users' raw data looks (CSV + .nii.gz)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citab_cli import __version__
from citab_cli.core import atomic
from citab_cli.core.errors import CitabError
from citab_cli.core.synth import anatomy, controls, latent
from citab_cli.core.synth.cohorts import COHORTS
from citab_cli.core.synth.wording import WORDINGS, reword_rows, reword_schema

#: Stable per-cohort stream ids: choosing fewer cohorts never changes the ones you keep.
_STREAM = {"adni": 1, "nacc": 2, "aibl": 3}
#: Sub-stream of a subject's scan: (seed, cohort stream, subject, _SCAN_STREAM).
_SCAN_STREAM = 1
#: Sub-stream of which subjects of a control's source cohort keep their diagnosis.
_LABEL_STREAM = 2


@dataclass(frozen=True)
class SynthCohort:
    """What was written for one synthetic cohort."""

    name: str
    subjects: int
    rows: int
    csv: Path
    images: Path
    ceiling_accuracy: float
    class_counts: dict[str, int]
    prevalence: tuple[float, ...] = ()
    labelled: int = 0  # subjects whose diagnosis the CSV gives
    tables_only: int = 0  # subjects with table rows and no scan (the last ones)


@dataclass(frozen=True)
class SynthResult:
    """Where the synthetic cohorts and their truth file were written."""

    out: Path
    cohorts: list[SynthCohort]
    truth: Path


def check_request(
    out: Path,
    cohorts: list[str],
    subjects: int,
    shape: int,
    image_signal: float = 1.0,
    wording: str = "shared",
    control: str | None = None,
    tables_only: int = 0,
) -> None:
    """Refuse a synth request that cannot be met (unknown cohorts, sizes, an output that exists)."""
    if tables_only < 0:
        raise CitabError(f"--tables-only {tables_only} is negative; give 0 or more subjects")
    if control is not None:
        design = controls.design(control)
        absent = [c for c in (design.target, *design.sources) if c not in cohorts]
        if absent:
            raise CitabError(
                f"--control {control} needs the cohorts {design.target} (target) and "
                f"{', '.join(design.sources)} (sources); add {', '.join(absent)} to --cohorts"
            )
    if wording not in WORDINGS:
        raise CitabError(f"--wording {wording} is not one of {', '.join(WORDINGS)}")
    if not 0 <= image_signal <= 1:
        raise CitabError(f"--image-signal {image_signal:g} is outside [0, 1]")
    unknown = [c for c in cohorts if c not in COHORTS]
    if unknown or not cohorts:
        raise CitabError(
            f"unknown synthetic cohort '{unknown[0] if unknown else ''}'; "
            f"choose from {', '.join(COHORTS)}"
        )
    if subjects < 6:
        raise CitabError(f"--subjects {subjects} is too few; use at least 6 per cohort")
    if not 16 <= shape <= 256:
        raise CitabError(f"--shape {shape} is outside 16..256 voxels")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CitabError(
            f"{out} already exists and is not empty; choose a new folder "
            "(synth never overwrites files)"
        )


def subjects_of(cohorts: list[str], subjects: int, control: str | None) -> dict[str, int]:
    """Subjects each cohort of a request gets (a control's sources get more)."""
    design = controls.design(control) if control is not None else None
    return {name: controls.Role.of(design, name, subjects).subjects for name in cohorts}


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def generate(
    out: Path,
    cohorts: list[str],
    subjects: int,
    shape: int,
    seed: int,
    advance: Callable[[], None] | None = None,
    image_signal: float = 1.0,
    raw_scans: bool = False,
    wording: str = "shared",
    control: str | None = None,
    tables_only: int = 0,
) -> SynthResult:
    """Write OUT/<cohort>.csv, OUT/<cohort>.yaml (its schema), OUT/<cohort>_mri/**.nii.gz and
    OUT/truth.{csv,json}. `wording` "independent" describes each cohort's columns in its own
    words (synth/wording.py); the values are the same as with "shared" but for NACC's education,
    recorded as a level. `control` "positive" writes a control with a known answer
    (synth/controls.py): large, mostly unlabelled source cohorts and a balanced target.
    `tables_only` adds that many subjects to each cohort with table rows and no scan (their
    truth's image is blank), as registries have.

    Deterministic: the same arguments give byte-identical files.
    """
    check_request(out, cohorts, subjects, shape, image_signal, wording, control, tables_only)
    design = controls.design(control) if control is not None else None
    grid = anatomy.Grid(shape)
    truth_rows: list[dict[str, str]] = []
    summary: list[SynthCohort] = []
    with atomic.staged_directory(out) as stage:
        for name in cohorts:
            role = controls.Role.of(design, name, subjects)
            cohort, truth = _write_cohort(stage, out, name, grid, seed, advance, image_signal,
                                          raw_scans, wording, role, tables_only)  # fmt: skip
            summary.append(cohort)
            truth_rows.extend(truth)
        (stage / "truth.csv").write_text(_csv_text(truth_rows))
        document = _truth_document(summary, seed, subjects, shape, grid)
        document["model"]["image_signal"] = image_signal
        document["raw_scans"] = raw_scans
        document["wording"] = wording
        document["control"] = controls.describe(design)
        if tables_only:
            document["tables_only"] = tables_only
        atomic.write_text(stage / "truth.json", json.dumps(document, indent=2) + "\n")
    return SynthResult(out=out, cohorts=summary, truth=out / "truth.json")


def _write_cohort(
    stage: Path,
    out: Path,
    name: str,
    grid: anatomy.Grid,
    seed: int,
    advance: Callable[[], None] | None,
    image_signal: float,
    raw_scans: bool,
    wording: str,
    role: controls.Role,
    tables_only: int = 0,
) -> tuple[SynthCohort, list[dict[str, str]]]:
    """One cohort's CSV, scans and schema under `stage`; its summary and its truth rows. The
    last `tables_only` subjects have table rows and no scan."""
    spec = COHORTS[name]
    prevalence = role.prevalence or spec.prevalence
    scanned = role.subjects
    subjects = scanned + tables_only
    rng = np.random.default_rng([seed, _STREAM[name]])
    lat = latent.sample(rng, subjects, prevalence, spec.age_mean, spec.education_mean, image_signal)
    keeps = np.random.default_rng([seed, _STREAM[name], _LABEL_STREAM]).random(subjects)
    rows: list[dict[str, str]] = []
    truth_rows: list[dict[str, str]] = []
    images = stage / f"{name}_mri"
    for i in range(subjects):
        subject, subject_rows, image_path = spec.rows(lat, i, rng)
        labelled = bool(keeps[i] < role.labelled)
        if not labelled:  # a source subject whose diagnosis the control hides
            for row in subject_rows:
                row[spec.label_column] = ""
        rows.extend(subject_rows)
        truth = None
        if i < scanned:
            subject_rng = np.random.default_rng([seed, _STREAM[name], i, _SCAN_STREAM])
            target = images / image_path
            target.parent.mkdir(parents=True, exist_ok=True)
            truth = _write_scan(target, grid, subject_rng, lat, i, spec.scanner, raw_scans)
        if truth is not None:
            mask_path = stage / f"{name}_truth" / f"{subject}_brainmask.nii.gz"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.write_bytes(truth)
        truth_rows.append(
            {
                "cohort": name,
                "subject": subject,
                "diagnosis": latent.CLASSES[lat.diagnosis[i]],
                "severity": f"{lat.severity[i]:.4f}",
                "severity_tabular": f"{lat.severity_tabular[i]:.4f}",
                "severity_image": f"{lat.severity_image[i]:.4f}",
                "age": f"{lat.age[i]:.2f}",
                "sex": "female" if lat.female[i] else "male",
                "education": f"{lat.education[i]:g}",
                "apoe4": str(int(lat.apoe4[i])),
                "labelled": "yes" if labelled else "no",
                "image": f"{name}_mri/{image_path}" if i < scanned else "",
                **({"brain_mask": f"{name}_truth/{subject}_brainmask.nii.gz"} if raw_scans else {}),
            }
        )
        if advance is not None and i < scanned:
            advance()
    if wording == "independent":
        reword_rows(name, rows)
    (stage / f"{name}.csv").write_text(_csv_text(rows))
    (stage / f"{name}.yaml").write_text(_schema_text(name, raw_scans, wording))
    counts = np.bincount(lat.diagnosis, minlength=3)
    cohort = SynthCohort(
        name=name,
        subjects=subjects,
        rows=len(rows),
        csv=out / f"{name}.csv",
        images=out / f"{name}_mri",
        ceiling_accuracy=latent.ceiling_accuracy(lat, prevalence),
        class_counts={c: int(k) for c, k in zip(latent.CLASSES, counts, strict=True)},
        prevalence=tuple(prevalence),
        labelled=int((keeps < role.labelled).sum()),
        tables_only=tables_only,
    )
    return cohort, truth_rows


def _write_scan(target: Path, grid, rng, lat, i: int, scanner, raw_scans: bool) -> bytes | None:
    """Write subject i's scan; with raw scans, return its true brain mask as .nii.gz bytes."""
    severity, age, female = float(lat.severity_image[i]), float(lat.age[i]), bool(lat.female[i])
    if not raw_scans:
        brain = anatomy.brain(grid, rng, severity, age, female)
        voxels = anatomy.scan(brain, grid, scanner, rng)
        target.write_bytes(anatomy.nifti_gz_bytes(voxels, grid.affine(scanner.flip)))
        return None
    from citab_cli.core.synth import head

    scan = head.raw_scan(grid, rng, severity, age, female, scanner)
    target.write_bytes(anatomy.nifti_gz_bytes(scan.data, scan.affine))
    return anatomy.nifti_gz_bytes(scan.brain_mask.astype(np.uint8), scan.affine)


def _schema_text(name: str, raw_scans: bool, wording: str = "shared") -> str:
    """The shipped schema of the cohort, with the pipeline its scans need: minimal for the
    brain-only scans, t1-linear for whole-head raw scans; with independent wording, the
    cohort's own descriptions."""
    import yaml

    from citab_cli.core import yaml_io
    from citab_cli.core.schema.cohort import shipped_schema_dir

    text = (shipped_schema_dir() / f"{name}.yaml").read_text()
    pipeline = "t1-linear" if raw_scans else "minimal"
    note = (
        f"# Written by citab synth: the shipped {name} schema, with preprocess: {pipeline} "
        "(the synthetic scans are " + ("whole heads" if raw_scans else "brains already") + ")"
    )
    text = text.replace("preprocess: t1-linear", f"preprocess: {pipeline}")
    if wording == "shared":
        return note + ".\n" + text
    document = reword_schema(name, yaml.safe_load(text))
    return note + ", every column described in this cohort's own words.\n" + yaml_io.dump(document)


def _truth_document(
    summary: list[SynthCohort], seed: int, subjects: int, shape: int, grid: anatomy.Grid
) -> dict:
    return {
        "citab_version": __version__,
        "seed": seed,
        "subjects_per_cohort": subjects,
        "shape": shape,
        "spacing_mm": grid.spacing,
        "model": {
            "classes": list(latent.CLASSES),
            "severity_means": latent.SEVERITY_MEANS.tolist(),
            "severity_spread": latent.SEVERITY_SPREAD,
            "tabular_noise": latent.TABULAR_NOISE,
            "image_noise": latent.IMAGE_NOISE,
        },
        "cohorts": {
            c.name: {
                "subjects": c.subjects,
                "labelled": c.labelled,
                "csv_rows": c.rows,
                "prevalence": list(c.prevalence),
                "class_counts": c.class_counts,
                "ceiling_accuracy": round(c.ceiling_accuracy, 4),
                # age rises with severity too: neither a driver nor a non-driver
                "drivers": list(COHORTS[c.name].drivers),
                "non_drivers": list(COHORTS[c.name].non_drivers),
            }
            for c in summary
        },
    }
