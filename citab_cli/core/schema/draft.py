"""`citab schema infer`: draft a cohort schema from a CSV (and its data dictionary) for a person
to review: column types and ranges, missing codes (cohort-wide when they recur), censored
values, the diagnosis column with its classes, identifiers to drop, the subject and visit."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core.errors import CitabError
from citab_cli.core.schema import infer_plan, infer_scans
from citab_cli.core.schema import infer_roles as roles
from citab_cli.core.schema import infer_values as values
from citab_cli.core.schema.cohort import COHORT_NAME, CohortSchema, token
from citab_cli.core.schema.dictionary import Entry, read_dictionary
from citab_cli.core.schema.infer_plan import ColumnGuess, ReviewRow
from citab_cli.core.schema.infer_yaml import render
from citab_cli.core.schema.raw_table import RawTable, read_csv

#: More distinct text values than this and a column is free text, not categorical.
MAX_LEVELS = 20
#: A column is numeric when at least this share of its non-blank cells are numbers.
NUMERIC_SHARE = 0.7
#: At most this many distinct small integers (0-9) read as codes of a categorical column.
MAX_CODED_LEVELS = 3


@dataclass
class Draft:
    """A drafted schema: its commented YAML, the review table, and the schema parsed."""

    text: str  # the schema YAML, with comments
    review: list[ReviewRow]
    schema: CohortSchema  # the draft, parsed (it always validates)


def _numeric(name: str, cells: values.Cells) -> ColumnGuess:
    words = values.missing_words(cells)
    codes = {w: cells.text[w] for w in words}
    sentinel = values.sentinels(cells.numbers)
    codes.update({values.label_for(v): cells.numbers[v] for v in sentinel})
    kept = [v for v in cells.numbers if v not in sentinel]
    bounds = [bound for bound, _ in cells.censored.values()]
    everything = kept + bounds or sorted(cells.numbers)
    small = [v for v in kept if float(v).is_integer() and 0 <= v <= 9]
    if len(kept) <= MAX_CODED_LEVELS and len(small) == len(kept) and not bounds:
        levels = {values.label_for(v): f"TODO name of {values.label_for(v)}" for v in sorted(kept)}
        spec: dict = {"type": "categorical", "levels": levels}
    else:
        spec = {
            "type": "numeric",
            "range": [math.floor(min(everything)), math.ceil(max(everything))],
        }
    if cells.censored:
        spec["parse"] = {
            t: values.typed(values.label_for(b)) for t, (b, _) in sorted(cells.censored.items())
        }
    guess = ColumnGuess(name, spec, codes, {values.label_for(v) for v in kept})
    guess.censored = {text: n for text, (_, n) in cells.censored.items()}
    return guess


def _categorical(name: str, cells: values.Cells) -> ColumnGuess | None:
    tokens = Counter(cells.text)
    tokens.update({values.label_for(v): n for v, n in cells.numbers.items()})
    words = [t for t in tokens if values.MISSING_WORDS.match(t)]
    levels = sorted(t for t in tokens if t not in words)
    if not levels or len(levels) > MAX_LEVELS:
        return None
    spec = {"type": "categorical", "levels": {t: t.lower() for t in levels}}
    return ColumnGuess(name, spec, {w: tokens[w] for w in words}, set(levels))


def _guess(name: str, cells: values.Cells) -> ColumnGuess | None:
    if cells.numbers and cells.numeric_share >= NUMERIC_SHARE:
        return _numeric(name, cells)
    return _categorical(name, cells)


def _cohort_wide(guesses: list[ColumnGuess]) -> dict[str, tuple[int, int]]:
    """Codes proposed in two or more columns and real data in none: code -> (columns, cells)."""
    seen: dict[str, list[int]] = {}
    for g in guesses:
        for code, n in g.codes.items():
            seen.setdefault(code, []).append(n)
    regular = set().union(*(g.regular for g in guesses)) if guesses else set()
    return {
        code: (len(counts), sum(counts))
        for code, counts in sorted(seen.items())
        if len(counts) >= 2 and code not in regular
    }


def _entry(name: str, dictionary: dict[str, Entry]) -> Entry | None:
    return dictionary.get(name) or dictionary.get(name.upper()) or dictionary.get(name.lower())


def _describe(name: str, spec: dict, entry: Entry | None) -> tuple[dict, str | None]:
    """The spec with a description (from the documentation when it has one for the column), and
    the file that described it (None: left TODO)."""
    described = {"type": spec["type"]}
    if entry is not None and len(entry.description) >= 3:
        described["description"] = entry.description
        if entry.unit and spec["type"] == "numeric":
            described["unit"] = entry.unit
    else:
        described["description"] = f"TODO: describe {name}"
        entry = None
    described.update({k: v for k, v in spec.items() if k != "type"})
    return described, (entry.source or "dictionary") if entry is not None else None


def _documented_levels(guess: ColumnGuess, cells: values.Cells, entry: Entry) -> ColumnGuess:
    """The guess as a categorical column with the documentation's level names, when the
    documentation names a level for every value the column holds."""
    named = {token(k): v for k, v in (entry.levels or {}).items() if v}
    held = {t for t in cells.text if not values.MISSING_WORDS.match(t)}
    held |= {values.label_for(v) for v in cells.numbers}
    if not named or not held or not {token(t) for t in held} <= set(named):
        return guess
    levels = {values.typed(k): v for k, v in named.items()}
    codes = {c: n for c, n in guess.codes.items() if token(c) not in named}
    return ColumnGuess(guess.name, {"type": "categorical", "levels": levels}, codes, held)


#: Image files listed from --images to find the subject column (the first this many).
MAX_IMAGE_FILES = 50_000


def image_files(folder: Path) -> list[str]:
    """Paths (relative to `folder`) of the NIfTI files and DICOM series folders under it."""
    if not folder.is_dir():
        raise CitabError(f"--images {folder}: not a folder; give the folder that holds the scans")
    found = []
    for path in folder.rglob("*"):
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz", ".dcm")):
            found.append(path.relative_to(folder).as_posix())
            if len(found) >= MAX_IMAGE_FILES:
                break
    return found


def draft(
    csv_path: Path,
    dictionary_path: Path | None = None,
    dictionary_columns: tuple[str, str] | None = None,
    images: Path | None = None,
) -> Draft:
    """A schema drafted from the CSV; every guess left to a person is marked TODO. `images`:
    the folder of the scans, to find the subject column their file names use."""
    table = read_csv(csv_path)
    dictionary = read_dictionary(dictionary_path, dictionary_columns) if dictionary_path else {}
    files = image_files(images) if images is not None else None
    scans = infer_scans.propose(images, files)
    return draft_table(table, dictionary, csv_path.stem.lower(), csv_path.name, files, scans=scans)


@dataclass(frozen=True)
class Fixed:
    """Roles a table's source settles, so the draft does not guess them (a BIDS dataset's
    subject column, and its scans found by the standard's layout)."""

    subject: str
    subject_how: str
    image: dict
    description: str | None = None  # of the export, when its source says what it is


def draft_table(
    table: RawTable,
    dictionary: dict[str, Entry],
    name: str,
    source: str,
    files: list[str] | None = None,
    fixed: Fixed | None = None,
    todo: bool = True,
    scans: tuple[str, str] | None = None,
) -> Draft:
    """A schema drafted from `table` (named `source` in the YAML's comments), its columns
    described by `dictionary` where it has them; cohort `name` when that is a valid name.
    Without `todo`, a column nothing describes is described by its name and a level nothing
    names by its value (a draft used as it is, not reviewed). `scans`: the pipeline the scans
    need and why (infer_scans.propose)."""
    cells = {c: values.read_cells(table.rows[c]) for c in table.columns}
    plan = infer_plan.roles_of(table, cells, files)
    if fixed is not None:
        _settle(plan, fixed)
    pipeline, plan.image_why = scans or infer_scans.propose(None, None)
    if isinstance(plan.image, dict):
        plan.image = {**plan.image, "preprocess": pipeline}
    if plan.label is not None and (entry := _entry(plan.label, dictionary)) and entry.levels:
        for level, meaning in entry.levels.items():  # "1": "cognitively normal" -> CN
            if plan.classes.get(level, "") is None:
                plan.classes[level] = roles.classes_of([meaning])[meaning]
    guesses, review = [], []
    for column in table.columns:
        if column in plan.assigned:
            review.append(plan.assigned[column])
            continue
        guess = _guess(column, cells[column])
        entry = _entry(column, dictionary)
        if guess is not None and entry is not None and entry.levels:
            guess = _documented_levels(guess, cells[column], entry)
        if guess is None:
            why = "always blank" if not cells[column].count else "free text (>20 values)"
            review.append(ReviewRow(column, f"left out: {why}", "", "add it by hand if needed"))
            continue
        guesses.append(guess)
    wide = _cohort_wide(guesses)
    columns, used_roles = {}, set()
    for guess in guesses:
        spec, described = _describe(guess.name, guess.spec, _entry(guess.name, dictionary))
        if not todo:
            spec = _untodo(guess.name, spec)
        own = {c: n for c, n in guess.codes.items() if c not in wide}
        if own:
            spec["missing"] = [values.typed(c) for c in sorted(own)]
        role = roles.covariate_of(guess.name)
        if role and role not in used_roles:
            spec["covariate"] = role
            used_roles.add(role)
        columns[guess.name] = (spec, own, guess.censored)
        review.append(infer_plan.review_row(guess, spec, own, wide, described))
    document = {
        "cohort": name if COHORT_NAME.match(name) else "my-cohort",
        "csv": source,
        "description": fixed.description if fixed is not None else None,
        "plan": plan,
        "cohort_wide": wide,
        "columns": columns,
    }
    text, schema = render(document, table)
    order = {c: i for i, c in enumerate(table.columns)}
    review.sort(key=lambda r: order.get(r.column, len(order)))
    return Draft(text, review, schema)


def _settle(plan: infer_plan.Plan, fixed: Fixed) -> None:
    """The plan with the roles `fixed` names instead of the guessed ones."""
    if plan.subject != fixed.subject:
        plan.assigned.pop(plan.subject, None)
        plan.drop.pop(fixed.subject, None)
        plan.subject = fixed.subject
    plan.subject_how = fixed.subject_how
    plan.assigned[fixed.subject] = ReviewRow(
        fixed.subject, f"subject ({fixed.subject_how})", "", ""
    )
    for column, row in list(plan.assigned.items()):
        if row.guess == "image path":
            del plan.assigned[column]
    plan.image = fixed.image


def _untodo(name: str, spec: dict) -> dict:
    """`spec` with its TODO placeholders replaced: the column's name, a level's value."""
    out = dict(spec)
    if str(out["description"]).startswith("TODO"):
        out["description"] = name if len(name) >= 3 else f"column {name}"
    if "levels" in out:
        out["levels"] = {
            k: str(k) if str(v).startswith("TODO") else v for k, v in out["levels"].items()
        }
    return out
