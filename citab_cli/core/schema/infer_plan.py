"""The roles of a drafted schema (subject, visit, label, image, dropped columns) and the review
table's rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from citab_cli.core.schema import infer_roles as roles
from citab_cli.core.schema import infer_values as values
from citab_cli.core.schema.raw_table import RawTable


@dataclass
class ColumnGuess:
    """What the draft proposes for one feature column."""

    name: str
    spec: dict  # the schema entry, without missing codes
    codes: dict[str, int] = field(default_factory=dict)  # proposed missing code -> cells
    regular: set[str] = field(default_factory=set)  # values that are real data in this column
    censored: dict[str, int] = field(default_factory=dict)  # censored text -> cells


@dataclass
class ReviewRow:
    """One row of the review table: a column, what it was taken for, what is left to check."""

    column: str
    guess: str  # what the column was taken for
    codes: str  # proposed missing codes and censored values
    todo: str  # what is still to check or write
    described_by: str = ""  # the file the description came from (a dictionary, a sidecar)


@dataclass
class Plan:
    """The roles the draft gives the table's columns."""

    subject: str
    subject_how: str
    visit: str | None = None
    baseline: str | None = None
    label: str | None = None
    classes: dict[str, str | None] = field(default_factory=dict)
    image: str | dict = ""
    image_why: str = ""  # why the image entry names its pipeline
    drop: dict[str, str] = field(default_factory=dict)  # column -> why
    assigned: dict[str, ReviewRow] = field(default_factory=dict)  # non-feature columns


def _image(table: RawTable, subject: str) -> tuple[str | dict, str | None]:
    """The image entry: a column of paths if there is one, else a pattern on the subject; with
    t1-linear, the pipeline for scans as scanners write them."""
    for column in table.columns:
        if any(v.strip().endswith((".nii", ".nii.gz")) for v in table.rows[column][:200]):
            return {"column": column, "preprocess": "t1-linear"}, column
    return {"pattern": f"**/*{{{subject}}}*.nii*", "preprocess": "t1-linear"}, None


def roles_of(
    table: RawTable, cells: dict[str, values.Cells], images: list[str] | None = None
) -> Plan:
    """The table's non-feature roles: identifiers to drop, subject and visit, label, image.
    `images`: the scans' file paths, when known, to find the column they are named by."""
    columns = table.columns
    drops = {c: why for c in columns if (why := roles.drop_reason(c, cells[c]))}
    candidates = [c for c in columns if c not in drops]
    subject, visit, how = roles.pick_subject_and_visit(candidates or columns, table.rows, images)
    others = [c for c in candidates if c not in (subject, visit) and roles.SUBJECT_NAMES.match(c)]
    for other in others:
        drops[other] = f"another identifier of the subject ({subject} is used)"
    todo = ""
    if others and not images:
        todo = (f"{', '.join(others)} also identif{'ies' if len(others) == 1 else 'y'} subjects: "
                "keep the one your scans are named by (or draft with --images)")  # fmt: skip
    plan = Plan(subject=subject, subject_how=how, drop=drops)
    plan.assigned[subject] = ReviewRow(subject, f"subject ({how})", "", todo)
    if visit is not None:
        plan.visit, plan.baseline = visit, roles.baseline_of(table.rows[visit])
        plan.assigned[visit] = ReviewRow(
            visit, "visit (subjects repeat)", "", f"check the baseline value '{plan.baseline}'"
        )
    plan.image, image_column = _image(table, subject)
    if image_column:
        plan.assigned[image_column] = ReviewRow(image_column, "image path", "", "")
    for column in columns:
        if column in plan.assigned or column in drops:
            continue
        if roles.is_label(column, cells[column]):
            plan.label = column
            levels = sorted(
                {v.strip() for v in table.rows[column] if v.strip()}
                - {t for t in cells[column].text if values.MISSING_WORDS.match(t)}
            )
            plan.classes = roles.classes_of(levels)
            unmapped = [lv for lv, c in plan.classes.items() if c is None]
            todo = f"classes for {', '.join(unmapped)}" if unmapped else "check the classes"
            mapped = ", ".join(f"{lv}->{c}" for lv, c in plan.classes.items() if c)
            plan.assigned[column] = ReviewRow(column, "label (diagnosis)", mapped, todo)
            break
    for column, why in drops.items():
        plan.assigned[column] = ReviewRow(column, f"drop: {why}", "", "")
    return plan


def review_row(
    guess: ColumnGuess, spec: dict, own: dict[str, int], wide: dict, described: str | None
) -> ReviewRow:
    """The review table's row for one feature column: what it was taken for, its codes and what is
    left to do."""
    if spec["type"] == "numeric":
        what = f"numeric [{spec['range'][0]}, {spec['range'][1]}]"
    else:
        what = f"categorical ({len(spec['levels'])} levels)"
    if spec.get("covariate"):
        what += f", covariate {spec['covariate']}"
    codes = [f"{c} ({n})" for c, n in sorted(own.items())]
    codes += [f"{c} (cohort-wide)" for c in sorted(guess.codes) if c in wide]
    parts = [f"missing {', '.join(codes)}"] if codes else []
    if guess.censored:
        parts.append("parse " + ", ".join(sorted(guess.censored)))
    todo = [] if described else ["description"]
    if spec["type"] == "numeric":
        # the instrument's range, not this export's, makes a score mean the same across cohorts
        todo.append("instrument's range")
    if spec["type"] == "categorical" and any(
        str(n).startswith("TODO") for n in spec["levels"].values()
    ):
        todo.append("level names")
    return ReviewRow(guess.name, what, "; ".join(parts), ", ".join(todo), described or "")
