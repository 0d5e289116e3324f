"""Data dictionaries: a cohort's own documentation of its columns, read so that drafted schemas
describe columns in the cohort's words instead of leaving TODOs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citab_cli.core.errors import CitabError
from citab_cli.core.schema.raw_table import read_csv

#: (name column, description column) pairs of the dictionaries citab recognises by themselves:
#: ADNI's DATADIC, NACC's researcher data dictionary, generic exports.
KNOWN_LAYOUTS = (
    ("FLDNAME", "TEXT"),
    ("VariableName", "Description"),
    ("Variable Name", "Description"),
    ("Variable", "Description"),
    ("Variable", "Label"),
    ("Name", "Description"),
    ("Field", "Description"),
    ("Variable", "Beschreibung"),
)
UNIT_COLUMNS = ("UNITS", "Units", "Unit", "Einheit")


@dataclass(frozen=True)
class Entry:
    """What a cohort's documentation says of one column: description and unit, and where it
    names them, its levels (raw value -> meaning) and the file it came from."""

    description: str
    unit: str | None
    levels: dict[str, str] | None = None
    source: str | None = None


def _find(columns: list[str], wanted: str) -> str | None:
    folded = {c.lower().replace(" ", "").replace("_", ""): c for c in columns}
    return folded.get(wanted.lower().replace(" ", "").replace("_", ""))


def read_dictionary(path: Path, columns: tuple[str, str] | None = None) -> dict[str, Entry]:
    """Column name -> its description (and unit) from a data dictionary CSV. `columns` names
    the name and description columns when the layout is not a known one."""
    table = read_csv(path)
    layouts = [columns] if columns else list(KNOWN_LAYOUTS)
    name_col = text_col = None
    for name, text in layouts:
        name_col, text_col = _find(table.columns, name), _find(table.columns, text)
        if name_col and text_col:
            break
    if not (name_col and text_col):
        if columns:
            missing = [c for c in columns if not _find(table.columns, c)]
            raise CitabError(
                f"{path}: no column '{missing[0]}' in the dictionary (it has "
                f"{', '.join(table.columns[:8])}); fix --dictionary-columns"
            )
        raise CitabError(
            f"{path}: not a dictionary layout citab knows (FLDNAME/TEXT, VariableName/"
            "Description, ...); name its columns with --dictionary-columns NAME,DESCRIPTION"
        )
    unit_col = next((c for c in (_find(table.columns, u) for u in UNIT_COLUMNS) if c), None)
    out: dict[str, Entry] = {}
    for i, name in enumerate(table.rows[name_col]):
        key, text = name.strip(), table.rows[text_col][i].strip()
        if not key or len(text) < 3 or key in out:
            continue  # the first description of a field wins (ADNI repeats fields per table)
        unit = table.rows[unit_col][i].strip() if unit_col else ""
        out[key] = Entry(" ".join(text.split()), unit or None, source=path.name)
    return out


def parse_columns(text: str | None) -> tuple[str, str] | None:
    """--dictionary-columns NAME,DESC -> (NAME, DESC)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise CitabError(
            f"--dictionary-columns '{text}' must be two column names, e.g. FLDNAME,TEXT"
        )
    return parts[0], parts[1]
