"""Which columns of an export play which role: the subject, the visit, the diagnosis, the
identifying columns to drop, and the demographics of the evaluation floor."""

from __future__ import annotations

import re

from citab_cli.core.schema.infer_values import MISSING_WORDS, Cells, is_date

SUBJECT_NAMES = re.compile(
    r"^(ptid|naccid|rid|subject|subject_?id|participant(_?id)?|patient(_?id)?|pid|id|"
    r"eid|probanden?(_?id|nr)?|pat(_?nr|_?id)?|record_?id)$",
    re.IGNORECASE,
)
VISIT_NAMES = re.compile(
    r"^(viscode2?|naccvnum|visit(_?code|_?number|_?no)?|session|ses|timepoint|tp|wave|"
    r"besuch|visite|termin|instance)$",
    re.IGNORECASE,
)
LABEL_NAMES = re.compile(
    r"(^dx|dx$|^dx_|diagnos|^group$|gruppe|consensus|konsens|naccudsd|dxcurren|"
    r"clinical_?status|^status$)",
    re.IGNORECASE,
)
#: Level text -> canonical class. Checked in this order; a level matching two is left to you.
CLASS_WORDS = {
    "MCI": re.compile(r"\b(mci|lkb|mild|leicht\w*|prodromal)\b", re.IGNORECASE),
    "AD": re.compile(r"\b(ad|dementia|demenz|dement\w*|alzheimer\w*|dat)\b", re.IGNORECASE),
    "CN": re.compile(
        r"\b(cn|nc|hc|normal|gesund|healthy|control|kontrolle|kontrollen|no impairment)\b",
        re.IGNORECASE,
    ),
}
BIRTH_NAMES = re.compile(r"(dob|birth|geburt|gebdat|geb_?datum|born)", re.IGNORECASE)
DATE_NAMES = re.compile(
    r"(date|datum|_dt$|^dt_|examdate|visitdate|update_stamp|time_?stamp)", re.IGNORECASE
)
PERSON_NAMES = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|vorname|nachname|initials|address|adresse|"
    r"phone|telefon|email|e-mail|postcode|plz|zip)($|_)",
    re.IGNORECASE,
)
COVARIATE_NAMES = {
    "age": re.compile(r"^(age|alter|naccage|age_?at_?visit|age_?years?|ptage)$", re.IGNORECASE),
    "sex": re.compile(r"^(sex|gender|ptgender|geschlecht|naccsex)$", re.IGNORECASE),
    "education": re.compile(
        r"^(educ|education|pteducat|years_?of_?education|edu_?years|bildung(sjahre)?|"
        r"schuljahre|ausbildungsjahre)$",
        re.IGNORECASE,
    ),
}


def classes_of(levels: list[str]) -> dict[str, str | None]:
    """Each level text -> CN / MCI / AD when its words say so unambiguously, else None."""
    out: dict[str, str | None] = {}
    for level in levels:
        hits = [name for name, pattern in CLASS_WORDS.items() if pattern.search(level)]
        out[level] = hits[0] if len(hits) == 1 else None
    return out


def is_label(name: str, cells: Cells) -> bool:
    """A diagnosis column: named like one (few distinct values), or text levels that read as
    diagnoses (two or more levels map to a class)."""
    distinct = len(cells.text) + len(cells.numbers)
    if distinct < 2 or distinct > 12:
        return False
    if LABEL_NAMES.search(name):
        return True
    words = [t for t in cells.text if not MISSING_WORDS.match(t)]
    return len([c for c in classes_of(words).values() if c]) >= 2


def drop_reason(name: str, cells: Cells) -> str | None:
    """Why a column should never enter the project, or None."""
    if BIRTH_NAMES.search(name):
        return "birth date"
    if PERSON_NAMES.search(name) and cells.text:
        return "personal details"
    if cells.dates and cells.dates >= 0.5 * len(cells.text) and cells.dates >= 0.5 * cells.count:
        return "date"
    if DATE_NAMES.search(name) and (cells.dates or not cells.numbers):
        return "date"
    return None


def covariate_of(name: str) -> str | None:
    """The covariate (age, sex, education) a column name stands for, if any."""
    return next((role for role, p in COVARIATE_NAMES.items() if p.match(name)), None)


def _unique(values: list[str]) -> bool:
    present = [v for v in values if v]
    return bool(present) and len(set(present)) == len(present)


def _identifier_like(values: list[str]) -> bool:
    present = [v for v in values if v]
    return bool(present) and not any(is_date(v) for v in present[:50])


def pick_subject_and_visit(
    columns: list[str], rows: dict[str, list[str]]
) -> tuple[str, str | None, str]:
    """(subject column, visit column or None, how the subject was found)."""
    values = {c: [v.strip() for v in rows[c]] for c in columns}
    named = [c for c in columns if SUBJECT_NAMES.match(c)]
    visits = [c for c in columns if VISIT_NAMES.match(c)]
    candidates = named + [c for c in columns if c not in named]
    for subject in candidates:
        if not _identifier_like(values[subject]):
            continue
        if _unique(values[subject]):
            return subject, None, "unique per row"
        for visit in visits + [c for c in columns if c != subject and c not in visits]:
            pairs = [f"{s}\x00{v}" for s, v in zip(values[subject], values[visit], strict=True)]
            if _unique(pairs) and (visit in visits or subject in named):
                return subject, visit, "unique per subject and visit"
        if subject in named:
            return subject, visits[0] if visits else None, "by its name"
    return columns[0], None, "first column (nothing was unique per row)"


def baseline_of(cells: list[str]) -> str:
    """The visit value that marks the first visit."""
    values = [v.strip() for v in cells if v.strip()]
    preferred = ("bl", "baseline", "BL", "m00", "V1", "v1", "1", "0", "sc", "T0", "t0")
    for value in preferred:
        if value in values:
            return value
    numbers = sorted({float(v) for v in values if _is_number(v)})
    if numbers:
        first = numbers[0]
        return str(int(first)) if first.is_integer() else str(first)
    return sorted(set(values))[0] if values else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
