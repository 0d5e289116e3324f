"""`citab schema infer`: draft a cohort schema from a CSV (and its data dictionary) for a person
to review: column types and ranges, missing codes (cohort-wide when they recur), censored
values, the diagnosis column with its classes, identifiers to drop, the subject and visit."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from citab_cli.core.errors import CitabError
from citab_cli.core.schema import infer_plan
from citab_cli.core.schema import infer_roles as roles
from citab_cli.core.schema import infer_values as values
from citab_cli.core.schema.cohort import COHORT_NAME, CohortSchema
from citab_cli.core.schema.dictionary import Entry, read_dictionary
from citab_cli.core.schema.infer_plan import ColumnGuess, ReviewRow
from citab_cli.core.schema.infer_yaml import render
from citab_cli.core.schema.raw_table import read_csv

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


def _describe(name: str, spec: dict, dictionary: dict[str, Entry]) -> tuple[dict, bool]:
    """The spec with a description (from the dictionary when it has the column)."""
    entry = dictionary.get(name) or dictionary.get(name.upper()) or dictionary.get(name.lower())
    described = {"type": spec["type"]}
    if entry is not None:
        described["description"] = entry.description
        if entry.unit and spec["type"] == "numeric":
            described["unit"] = entry.unit
    else:
        described["description"] = f"TODO: describe {name}"
    described.update({k: v for k, v in spec.items() if k != "type"})
    return described, entry is not None


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
    cells = {c: values.read_cells(table.rows[c]) for c in table.columns}
    files = image_files(images) if images is not None else None
    plan = infer_plan.roles_of(table, cells, files)
    guesses, review = [], []
    for column in table.columns:
        if column in plan.assigned:
            review.append(plan.assigned[column])
            continue
        guess = _guess(column, cells[column])
        if guess is None:
            why = "always blank" if not cells[column].count else "free text (>20 values)"
            review.append(ReviewRow(column, f"left out: {why}", "", "add it by hand if needed"))
            continue
        guesses.append(guess)
    wide = _cohort_wide(guesses)
    columns, used_roles = {}, set()
    for guess in guesses:
        spec, described = _describe(guess.name, guess.spec, dictionary)
        own = {c: n for c, n in guess.codes.items() if c not in wide}
        if own:
            spec["missing"] = [values.typed(c) for c in sorted(own)]
        role = roles.covariate_of(guess.name)
        if role and role not in used_roles:
            spec["covariate"] = role
            used_roles.add(role)
        columns[guess.name] = (spec, own, guess.censored)
        review.append(infer_plan.review_row(guess, spec, own, wide, described))
    name = csv_path.stem.lower()
    document = {
        "cohort": name if COHORT_NAME.match(name) else "my-cohort",
        "csv": csv_path.name,
        "plan": plan,
        "cohort_wide": wide,
        "columns": columns,
    }
    text, schema = render(document, table)
    order = {c: i for i, c in enumerate(table.columns)}
    review.sort(key=lambda r: order.get(r.column, len(order)))
    return Draft(text, review, schema)
