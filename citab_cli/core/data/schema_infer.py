"""`citab schema infer`: draft a cohort schema from a CSV for a person to review."""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from citab_cli.core.data.schema import COHORT_NAME, token
from citab_cli.core.data.table import RawTable, read_csv

SUBJECT_NAMES = ("PTID", "NACCID", "RID", "subject", "subject_id", "participant_id", "ID")
VISIT_NAMES = ("VISCODE", "NACCVNUM", "visit", "session", "VISIT")
LABEL_NAMES = ("DX", "DIAGNOSIS", "NACCUDSD", "DXCURREN", "diagnosis", "label", "group", "dx")
#: Codes cohorts use for "not collected / not applicable / unknown", suspected when they sit
#: apart from a column's other values.
SENTINELS = {
    -1,
    -4,
    -9,
    -99,
    -999,
    8,
    9,
    88,
    95,
    96,
    97,
    98,
    99,
    888,
    888.8,
    995,
    996,
    997,
    998,
    999,
    8888,
    9999,
}
TEXT_MISSING = {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "."}
DATE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|/\d{4})")
MAX_LEVELS = 20


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _yaml_scalar(text: str) -> str | int | float:
    number = _number(text)
    if number is None:
        return text
    return int(number) if number.is_integer() else number


def _column(cells: list[str], cohort_missing: set[str]) -> tuple[str, dict] | None:
    present = [c.strip() for c in cells if c.strip() not in cohort_missing]
    if not present:
        return None
    distinct = sorted(set(present))
    if sum(bool(DATE.match(v)) for v in distinct) > len(distinct) / 2:
        return "drop", {}
    numbers = {v: _number(v) for v in distinct}
    if all(n is not None for n in numbers.values()):
        values = sorted(set(numbers.values()))
        regular = [v for v in values if v not in SENTINELS]
        codes = []
        if regular:
            top, bottom = max(regular), min(regular)
            codes = [
                v
                for v in values
                if v in SENTINELS and (v > max(top * 1.5, top + 5) or (v < 0 <= bottom))
            ]
        kept = [v for v in values if v not in codes] or values
        spec: dict = {}
        if len(kept) <= 3 and all(float(v).is_integer() and 0 <= v <= 9 for v in kept):
            spec = {
                "type": "categorical",
                "levels": {_yaml_scalar(token(v)): f"TODO name of {token(v)}" for v in kept},
            }
        else:
            spec = {"type": "numeric", "range": [math.floor(min(kept)), math.ceil(max(kept))]}
        if codes:
            spec["missing"] = [_yaml_scalar(token(v)) for v in codes]
        return "column", spec
    if len(distinct) <= MAX_LEVELS:
        return "column", {"type": "categorical", "levels": {v: v.lower() for v in distinct}}
    return "text", {}


def draft(csv_path: Path) -> str:
    """A schema YAML drafted from the CSV; every guess is marked TODO for review."""
    table: RawTable = read_csv(csv_path)
    columns = table.columns
    used: set[str] = set()
    present_tokens = {c: {v.strip() for v in table.rows[c]} for c in columns}
    cohort_missing = [m for m in ("", "NA") if any(m in v for v in present_tokens.values())]
    if sum("-4" in present_tokens[c] for c in columns) >= 2:
        cohort_missing.append("-4")
    missing_set = set(cohort_missing) | TEXT_MISSING

    name = csv_path.stem.lower()
    subject = _pick(columns, SUBJECT_NAMES) or columns[0]
    used.add(subject)
    doc: dict = {
        "cohort": name if COHORT_NAME.match(name) else "my-cohort",
        "description": f"TODO: describe this export ({csv_path.name})",
        "subject": subject,
    }
    visit = _pick(columns, VISIT_NAMES)
    if visit:
        values = sorted({v.strip() for v in table.rows[visit]} - missing_set)
        baseline = "bl" if "bl" in values else "1" if "1" in values else values[0]
        doc["visit"] = {"column": visit, "baseline": _yaml_scalar(baseline)}
        used.add(visit)
    image_column = next(
        (c for c in columns if any(v.strip().endswith((".nii", ".nii.gz")) for v in table.rows[c])),
        None,
    )
    if image_column:
        doc["image"] = {"column": image_column}
        used.add(image_column)
    else:
        doc["image"] = f"**/*{{{subject}}}*.nii*"
    label = _pick(columns, LABEL_NAMES)
    if label:
        values = sorted({v.strip() for v in table.rows[label]} - missing_set)[:MAX_LEVELS]
        doc["label"] = {"column": label, "classes": {_yaml_scalar(v): v for v in values}}
        used.add(label)
    doc["missing"] = cohort_missing
    drop: list[str] = []
    ignored: list[str] = []
    features: dict = {}
    for column in columns:
        if column in used:
            continue
        guess = _column(table.rows[column], missing_set)
        if guess is None:
            ignored.append(f"{column} (always missing)")
        elif guess[0] == "drop":
            drop.append(column)
        elif guess[0] == "text":
            ignored.append(f"{column} (free text)")
        else:
            spec = guess[1]
            features[column] = {
                "type": spec["type"],
                "description": f"TODO: describe {column}",
                **{k: v for k, v in spec.items() if k != "type"},
            }
    doc["drop"] = drop
    doc["columns"] = features
    header = [
        f"# Draft schema for {csv_path.name}, written by `citab schema infer`.",
        "# Review every TODO: descriptions are what the model reads, so write each one the way",
        "# another cohort would describe the same measurement (and add the unit).",
        "# Check the label classes (map them to shared names such as CN / MCI / AD), the visit",
        "# baseline, the image pattern ({COLUMN} fields are filled from each row), the suspected",
        "# missing codes, and move identifying columns (dates, names) to drop.",
    ]
    if ignored:
        header.append(f"# Left out: {', '.join(ignored)}.")
    body = yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    return "\n".join(header) + "\n" + body
