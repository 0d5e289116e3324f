"""A cohort's raw CSV validated row by row against its schema: the rows kept, converted."""

from __future__ import annotations

import difflib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.schema.cohort import CategoricalColumn, CohortSchema, NumericColumn, token
from citab_cli.core.schema.raw_table import RawTable, shown

#: CSV line of the first data row (line 1 is the header).
FIRST_DATA_LINE = 2


@dataclass
class ValidatedTable:
    """The rows kept from a cohort's CSV, converted to citab's columns."""

    subjects: list[str]
    lines: list[int]  # CSV line of each kept row
    columns: list[str]  # feature columns the CSV has, schema order (absent optional ones left out)
    values: np.ndarray  # (N, C) float32, NaN = missing, categorical = level index
    labels: list[str | None]  # canonical class or None (unlabelled)
    image_keys: list[dict[str, str]]  # per row: the cells image resolution needs
    rows_read: int
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    warnings: list[str] = field(default_factory=list)

    def subset(self, keep: list[int]) -> ValidatedTable:
        """The rows `keep` of this table (its counts of rows read and dropped shared)."""
        return ValidatedTable(
            subjects=[self.subjects[i] for i in keep],
            lines=[self.lines[i] for i in keep],
            columns=self.columns,
            values=self.values[keep],
            labels=[self.labels[i] for i in keep],
            image_keys=[self.image_keys[i] for i in keep],
            rows_read=self.rows_read,
            dropped=self.dropped,
            warnings=self.warnings,
        )


def _where(table: RawTable, row: int, column: str) -> str:
    return f"{table.path}: line {row + FIRST_DATA_LINE}, column '{column}'"


def _require_columns(table: RawTable, schema: CohortSchema, schema_path: Path) -> None:
    needed: dict[str, str] = {}
    for role, name in schema.role_columns().items():
        needed[name] = f"the {role} column"
    for name in schema.image_fields():
        needed.setdefault(name, "a field of the image pattern")
    for name, col in schema.columns.items():
        if col.required:
            needed.setdefault(name, "a feature column")
    have = set(table.columns)
    for name, role in needed.items():
        if name not in have:
            close = difflib.get_close_matches(name, table.columns, n=1)
            hint = f" (the CSV has '{close[0]}')" if close else ""
            raise CitabError(
                f"{table.path}: missing required column '{name}', {role} in {schema_path}{hint}; "
                "add it to the CSV or fix the schema"
            )


def _numeric(raw: str, spec: NumericColumn, missing: set[str]) -> float | str:
    """A number, NaN for missing, or the reason the cell is invalid."""
    tok = token(raw)
    if tok in missing:
        return math.nan
    text = raw.strip()
    if text in spec.parse:
        return float(spec.parse[text])
    try:
        value = float(text)
    except ValueError:
        return "is text, expected a number"
    if not math.isfinite(value):
        return "is not a finite number"
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        lo, hi = (token(b) for b in spec.range)
        return f"is outside the range [{lo}, {hi}]"
    return value


def _convert_column(
    table: RawTable,
    name: str,
    spec: NumericColumn | CategoricalColumn,
    rows: list[int],
    cohort_missing: set[str],
    schema_path: Path,
) -> np.ndarray:
    cells = table.rows.get(name)
    out = np.full(len(rows), np.nan, dtype=np.float32)
    if cells is None:
        return out
    missing = cohort_missing | set(spec.missing)
    lookup = spec.level_lookup if isinstance(spec, CategoricalColumn) else None
    cache: dict[str, float | str] = {}
    for i, row in enumerate(rows):
        raw = cells[row]
        if raw not in cache:
            if lookup is None:
                cache[raw] = _numeric(raw, spec, missing)  # type: ignore[arg-type]
            else:
                tok = token(raw)
                if tok in missing:
                    cache[raw] = math.nan
                elif tok in lookup:
                    cache[raw] = float(lookup[tok])
                else:
                    known = ", ".join(str(k) for k in spec.levels)
                    cache[raw] = f"is not a known level (known: {known})"
        result = cache[raw]
        if isinstance(result, str):
            if lookup is None:
                fix = (
                    f"fix the cell, or list the code under this column's missing: "
                    f"(or parse:{' / range:' if 'range' in result else ''}) in {schema_path}"
                )
            else:
                fix = (
                    f"fix the cell, or add it to this column's levels: or missing: in {schema_path}"
                )
            raise CitabError(f"{_where(table, row, name)}: value '{shown(raw)}' {result}; {fix}")
        out[i] = result
    return out


def validate(table: RawTable, schema: CohortSchema, schema_path: Path) -> ValidatedTable:
    """Check every row of `table` against `schema`; raise on the first bad cell."""
    _require_columns(table, schema, schema_path)
    cohort_missing = set(schema.missing)
    dropped: Counter = Counter()
    warnings: list[str] = []
    rows = _kept_rows(table, schema, schema_path, dropped)
    _check_subjects(table, schema, rows, cohort_missing)
    labels = _labels(table, schema, rows, cohort_missing, warnings)
    # An optional column the CSV lacks is absent, not missing: it gets no token at all (a
    # column of "missing" cells would be a constant that only identifies the cohort).
    columns = [name for name in schema.columns if name in table.rows]
    values = np.stack(
        [
            _convert_column(table, name, schema.columns[name], rows, cohort_missing, schema_path)
            for name in columns
        ]
        or [np.zeros(len(rows), np.float32)],
        axis=1,
    ).astype(np.float32)[:, : len(columns)]
    warnings += _column_warnings(table, schema, columns, values, len(rows))
    key_columns = schema.image_fields()
    if not key_columns and schema.role_columns().get("image"):
        key_columns = [schema.role_columns()["image"]]
    image_keys = [{c: table.rows[c][row].strip() for c in key_columns} for row in rows]
    subject_cells = table.rows[schema.subject]
    return ValidatedTable(
        subjects=[subject_cells[r].strip() for r in rows],
        lines=[r + FIRST_DATA_LINE for r in rows],
        columns=columns,
        values=values if len(rows) else np.zeros((0, len(columns)), np.float32),
        labels=labels,
        image_keys=image_keys,
        rows_read=table.n_rows,
        dropped=dropped,
        warnings=warnings,
    )


def _kept_rows(
    table: RawTable, schema: CohortSchema, schema_path: Path, dropped: Counter
) -> list[int]:
    """Data rows that are not blank and, with a visit column, are the baseline visit."""
    rows: list[int] = []
    for row in range(table.n_rows):
        if all(not table.rows[c][row].strip() for c in table.columns):
            dropped["blank line"] += 1
            continue
        rows.append(row)
    if schema.visit is None:
        return rows
    visit_cells = table.rows[schema.visit.column]
    baseline = schema.visit.baseline
    kept = [r for r in rows if token(visit_cells[r]) == baseline]
    if len(rows) - len(kept):
        reason = f"not the baseline visit ({schema.visit.column} != {baseline})"
        dropped[reason] += len(rows) - len(kept)
    if not kept:
        raise CitabError(
            f"{table.path}: no row has {schema.visit.column} = '{baseline}' "
            f"(the baseline visit); fix visit.baseline in {schema_path}"
        )
    return kept


def _check_subjects(
    table: RawTable, schema: CohortSchema, rows: list[int], cohort_missing: set[str]
) -> None:
    """Every kept row names a subject, and no subject appears twice."""
    subject_cells = table.rows[schema.subject]
    first_line: dict[str, int] = {}
    for row in rows:
        subject = subject_cells[row].strip()
        if not subject or token(subject) in cohort_missing:
            raise CitabError(
                f"{_where(table, row, schema.subject)}: the subject ID is empty; "
                "fill it in or remove the row"
            )
        if subject in first_line:
            raise CitabError(
                f"{_where(table, row, schema.subject)}: subject '{shown(subject)}' appears again "
                f"(first on line {first_line[subject] + FIRST_DATA_LINE}); keep one row per "
                "subject, or set visit: {column, baseline} in the schema to pick the baseline"
            )
        first_line[subject] = row


def _labels(
    table: RawTable,
    schema: CohortSchema,
    rows: list[int],
    cohort_missing: set[str],
    warnings: list[str],
) -> list[str | None]:
    """The canonical class of each kept row; unmapped labels are kept unlabelled, with a
    warning per raw value."""
    labels: list[str | None] = [None] * len(rows)
    if schema.label is None:
        return labels
    lookup = schema.label.lookup
    unmapped: Counter = Counter()
    label_cells = table.rows[schema.label.column]
    for i, row in enumerate(rows):
        tok = token(label_cells[row])
        if tok in cohort_missing or tok not in lookup:
            if tok not in cohort_missing:
                unmapped[label_cells[row].strip()] += 1
            continue
        labels[i] = lookup[tok]
    for raw, count in unmapped.most_common():
        warnings.append(
            f"{count} row(s) with {schema.label.column} = '{shown(raw)}' have no class "
            "in the schema and are kept unlabelled"
        )
    return labels


def _column_warnings(
    table: RawTable, schema: CohortSchema, columns: list[str], values: np.ndarray, n_rows: int
) -> list[str]:
    """Optional columns the CSV lacks, mostly-missing columns, CSV columns nobody uses."""
    warnings = []
    for name in schema.columns:
        if name not in table.rows:
            warnings.append(
                f"optional column '{name}' is not in the CSV: left out (the cohort does not "
                "have it, which is not the same as every value missing)"
            )
    for j, name in enumerate(columns):
        rate = float(np.isnan(values[:, j]).mean()) if n_rows else 0.0
        if rate > 0.5:
            warnings.append(f"column '{name}' is missing in {rate:.0%} of kept rows")
    used = set(columns) | set(schema.role_columns().values()) | set(schema.image_fields())
    unused = [c for c in table.columns if c not in used and c not in schema.drop]
    if unused:
        listed = ", ".join(unused[:6]) + (", ..." if len(unused) > 6 else "")
        warnings.append(f"{len(unused)} CSV column(s) not in the schema were ignored: {listed}")
    return warnings
