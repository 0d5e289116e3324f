"""`citab ingest BIDS_ROOT`: a BIDS dataset planned as one cohort. Its table and scans come from
the dataset (`bids.read`); its schema from --schema, the project's copy, else a draft whose
descriptions are the dataset's own (JSON sidecars), saved with the cohort."""

from __future__ import annotations

from pathlib import Path

from citab_cli.core.data import bids
from citab_cli.core.data.bids_tables import SUBJECT_COLUMN
from citab_cli.core.data.image_paths import MissingImage
from citab_cli.core.data.ingest import Planned, assemble
from citab_cli.core.data.ingest_plan import DEFAULT_PIPELINE, IngestPlan, OnBadScan, OnMissing
from citab_cli.core.data.project import Project
from citab_cli.core.data.project_setup import project_settings
from citab_cli.core.data.table import ValidatedTable
from citab_cli.core.errors import CitabError
from citab_cli.core.schema import infer_scans
from citab_cli.core.schema.cohort import COHORT_NAME, ImageByBids, load_schema
from citab_cli.core.schema.draft import Draft
from citab_cli.core.settings import SplitSettings

#: How a scan is found in a dataset, for the drafted schema.
DRAFT_IMAGE = {"bids": True, "preprocess": "t1-linear"}


def draft(dataset: bids.Dataset, todo: bool = True) -> Draft:
    """A schema drafted from the dataset's table, described by its JSON sidecars. With `todo`
    off (an ingest with no schema), what the dataset does not describe is named by its column
    instead of a TODO."""
    from citab_cli.core.schema.draft import Fixed, draft_table

    what = f"BIDS dataset {dataset.name}" if dataset.name else "a BIDS dataset"
    fixed = Fixed(SUBJECT_COLUMN, "BIDS participant_id", DRAFT_IMAGE, what)
    source = f"{dataset.root.name}/ (BIDS)"
    files = [scan.path.relative_to(dataset.root).as_posix() for scan in dataset.scans.values()]
    scans = infer_scans.propose(dataset.root, files)
    return draft_table(dataset.table, dataset.columns, dataset.cohort, source, fixed=fixed,
                       todo=todo, scans=scans)  # fmt: skip


def plan(
    root: Path,
    project_root: Path,
    rules: bids.Rules,
    cohort: str | None = None,
    schema_file: Path | None = None,
    on_missing_image: OnMissing = "error",
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    preprocess: str | None = None,
    on_bad_scan: OnBadScan = "error",
    split: SplitSettings | None = None,
    splits_file: Path | None = None,
) -> IngestPlan:
    """Read and check the dataset, its schema and its scans; write nothing."""
    if split is not None and splits_file is not None:
        raise CitabError("--split and --splits FILE exclude each other; give one")
    dataset = bids.read(root, rules)
    project = Project(project_root)
    explicit = load_schema(schema_file) if schema_file is not None else None
    name = cohort or (explicit.cohort if explicit else dataset.cohort)
    if not COHORT_NAME.match(name):
        raise CitabError(
            f"'{name}' is not a valid cohort name; pass --cohort NAME (lower-case letters, "
            "digits, '-', '_')"
        )
    warnings: list[str] = []
    text = None
    if explicit is not None:
        schema, schema_path = explicit, schema_file
    elif project.schema_path(name).is_file():
        schema_path = project.schema_path(name)
        schema = load_schema(schema_path)
    else:
        drafted = draft(dataset, todo=False)
        schema, text, schema_path = drafted.schema, drafted.text, project.schema_path(name)
        schema = schema.model_copy(update={"cohort": name})
        text = text.replace(f"cohort: {drafted.schema.cohort}\n", f"cohort: {name}\n", 1)
        warnings += _draft_warnings(drafted, schema_path)
    assert schema_path is not None
    if not isinstance(schema.image, ImageByBids):
        raise CitabError(
            f"{schema_path}: its image: entry finds scans in a folder of a CSV's rows; for a "
            "BIDS dataset write image: {bids: true} (the session and run rules pick the scans)"
        )
    if schema.subject != SUBJECT_COLUMN:
        raise CitabError(
            f"{schema_path}: subject: is '{schema.subject}'; a BIDS dataset's subjects are "
            f"its {SUBJECT_COLUMN} column: write subject: {SUBJECT_COLUMN}"
        )
    pipeline = preprocess or schema.image_preprocess or DEFAULT_PIPELINE
    settings, new_project = project_settings(project, shape, spacing, pipeline, split)
    warnings += dataset.notes

    def images(table: ValidatedTable):
        found: list[Path | None] = []
        missing = []
        for subject, line in zip(table.subjects, table.lines, strict=True):
            scan = dataset.scans.get(subject)
            found.append(scan.path if scan else None)
            if scan is None:
                missing.append(MissingImage(line, subject, _looked_for(dataset, subject)))
        return found, missing

    planned = Planned(project, settings, new_project, name, schema, schema_path, pipeline,
                      warnings)  # fmt: skip
    result = assemble(planned, dataset.table, dataset.root, images, on_missing_image,
                      on_bad_scan, splits_file)  # fmt: skip
    result.schema_text = text
    result.bids = dataset.record()
    if dataset.skipped:
        result.notes.append(f"{len(dataset.skipped)} T1w file(s) not chosen by the rules "
                            f"({dataset.rules.describe()}); listed in the manifest")  # fmt: skip
    return result


def _looked_for(dataset: bids.Dataset, subject: str) -> str:
    """Where a subject's T1w was looked for, and by which rule."""
    session = dataset.sessions.get(subject)
    if session is None and dataset.rules.session not in ("first", "last"):
        session = bids.session_label(dataset.rules.session)
    where = f"{subject}/ses-{session}/anat" if session else f"{subject}/anat"
    acq = f" with acq-{dataset.rules.acq}" if dataset.rules.acq else ""
    return f"{where}/*_T1w.nii[.gz]{acq}"


def _draft_warnings(drafted: Draft, schema_path: Path) -> list[str]:
    """What an ingest with a drafted schema should tell: the columns the dataset leaves
    undescribed, a missing label."""
    out = [f"no schema given: drafted from the dataset's JSON sidecars; the ingest keeps it as "
           f"{schema_path} (`citab schema infer` shows what it rests on)"]  # fmt: skip
    named = [
        c for c, spec in drafted.schema.columns.items() if spec.description in (c, f"column {c}")
    ]
    if named:
        out.append(f"{len(named)} column(s) have no Description in the dataset's JSON sidecars "
                   f"and are read by their names ({', '.join(named[:6])}); describe them there "
                   "or pass --schema")  # fmt: skip
    if drafted.schema.label is None:
        out.append("no diagnosis column was recognised: the cohort is unlabelled (pretraining "
                   "only); pass --schema with a label: entry to probe it")  # fmt: skip
    return out
