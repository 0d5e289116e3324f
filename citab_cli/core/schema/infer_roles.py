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
#: Identifiers of an image, a site or a centre: numbers that say nothing about a subject.
ID_NAMES = re.compile(
    r"(uid$|^(image|scan|series|study|exam|loni)_?(id|uid|num|nr)$|^(site|siteid|site_?id|"
    r"centre|center|centre_?id|center_?id|naccadc|adc|scanner(_?id)?)$)",
    re.IGNORECASE,
)
#: Calendar years (of a visit, an exam): dates, and a number that drifts with the study's age.
YEAR_NAMES = re.compile(r"(yr$|year|jahr)", re.IGNORECASE)
#: Years a calendar-year column's values lie in.
CALENDAR = (1900, 2100)
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
    if ID_NAMES.search(name):
        return "identifier of an image, site or centre"
    years = list(cells.numbers)
    if (
        YEAR_NAMES.search(name)
        and years
        and all(float(v).is_integer() and CALENDAR[0] <= v <= CALENDAR[1] for v in years)
    ):
        return f"calendar year ({int(min(years))}-{int(max(years))}), a date"
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


#: Subject ids compared with the image file names, per candidate column.
IMAGE_SAMPLE = 200


def image_matches(values: list[str], images: list[str]) -> int:
    """How many of a column's distinct values (a sample) appear in the image file paths."""
    distinct = sorted({v for v in values if v})[:IMAGE_SAMPLE]
    text = "\n".join(images)
    return sum(
        1 for v in distinct if re.search(rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])", text)
    )


def pick_subject_and_visit(
    columns: list[str], rows: dict[str, list[str]], images: list[str] | None = None
) -> tuple[str, str | None, str]:
    """(subject column, visit column or None, how the subject was found). With `images` (file
    paths), a column named like a subject id whose values appear in the file names comes first."""
    values = {c: [v.strip() for v in rows[c]] for c in columns}
    named = [c for c in columns if SUBJECT_NAMES.match(c)]
    found = {c: image_matches(values[c], images) for c in named} if images else {}
    length = {c: sum(map(len, values[c])) / max(len(values[c]), 1) for c in named}
    # most ids found in the file names first; among equals the longer ids (a short number turns
    # up in file names by chance); then column order
    named.sort(key=lambda c: (-found.get(c, 0), -length[c] if found.get(c) else 0))
    why = ""
    if found.get(named[0] if named else "", 0):
        sample = min(len({v for v in values[named[0]] if v}), IMAGE_SAMPLE)
        why = f"; {found[named[0]]} of {sample} ids found in the image file names"
        tied = [c for c in named[1:] if found[c] == found[named[0]]]
        if tied:
            why += f" (so are {', '.join(tied)}'s, shorter ids)"
    visits = [c for c in columns if VISIT_NAMES.match(c)]
    candidates = named + [c for c in columns if c not in named]
    for subject in candidates:
        if not _identifier_like(values[subject]):
            continue
        if _unique(values[subject]):
            return subject, None, f"unique per subject, one row each{why}"
        for visit in visits + [c for c in columns if c != subject and c not in visits]:
            pairs = [f"{s}\x00{v}" for s, v in zip(values[subject], values[visit], strict=True)]
            if _unique(pairs) and (visit in visits or subject in named):
                return subject, visit, f"unique per subject; its rows differ by {visit}{why}"
        if subject in named:
            return subject, visits[0] if visits else None, f"by its name{why}"
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
