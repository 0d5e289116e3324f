"""How the synthetic cohorts describe their columns.

`shared`: the shipped schemas, where two cohorts' columns for one concept read alike (cosine 1
between their headers: matching is trivially exact). `independent`: each cohort describes its
columns the way its own data dictionary might, written without looking at the others, in its own
style and sometimes its own units; NACC also records education as the highest level reached
instead of years. Header matching is then imperfect, as it is between real cohorts.
"""

from __future__ import annotations

WORDINGS = ("shared", "independent")

#: cohort -> column -> (description, unit or None), written independently per cohort.
INDEPENDENT: dict[str, dict[str, tuple[str, str | None]]] = {
    "adni": {  # terse labels, as a merged analysis table has them
        "AGE": ("Age at visit", "yr"),
        "PTGENDER": ("Participant gender", None),
        "PTEDUCAT": ("Participant education", "yrs"),
        "APOE4": ("ApoE4 allele count", None),
        "MMSE": ("MMSE total", None),
        "MOCA": ("MoCA", None),
        "CDRSB": ("CDR-SB", None),
        "ADAS13": ("ADAS-Cog, 13 items", None),
        "RAVLT_immediate": ("RAVLT immediate recall (trials 1-5 summed)", None),
        "FAQ": ("FAQ", None),
        "ABETA": ("CSF Abeta", "pg/ml"),
    },
    "nacc": {  # full sentences about "the subject", as a visit form's definitions read
        "NACCAGE": ("The subject's age on the day of the visit", "years"),
        "SEX": ("The subject's sex", None),
        "EDUC": ("The highest level of schooling the subject completed", None),
        "NACCNE4S": ("How many copies of the e4 allele of APOE the subject has", None),
        "NACCMMSE": ("Total score on the MMSE", None),
        "MOCATOTS": ("MoCA total, not corrected for education", None),
        "CDRSUM": ("Sum of the six CDR box scores", None),
        "CDRGLOB": ("CDR global", None),
        "NACCGDS": ("GDS total (short form)", None),
        "ANIMALS": ("Animals the subject named in sixty seconds", None),
        "TRAILB": ("Seconds the subject took to finish Trail Making part B", None),
        "NACCBMI": ("BMI", None),
    },
    "aibl": {  # field labels of a study database export
        "AGE": ("Age at assessment", None),
        "PTGENDER": ("Gender", None),
        "APGEN1": ("APOE allele 1", None),
        "APGEN2": ("APOE allele 2", None),
        "MMSCORE": ("Mini mental score", None),
        "CDGLOBAL": ("CDR global rating", None),
        "LIMMTOTAL": ("LM immediate recall", None),
        "LDELTOTAL": ("LM delayed recall", None),
        "BAT126": ("Serum vitamin B12", "pmol/L"),
        "MH16SMOK": ("Ever smoked", None),
    },
}

#: NACC's education under independent wording: level code -> canonical level name.
EDUCATION_LEVELS = {
    1: "primary school",
    2: "high school",
    3: "some college",
    4: "bachelor's degree",
    5: "graduate degree",
}
#: Upper bound in years of each education level (the last one takes the rest).
EDUCATION_YEARS = (8, 12, 15, 17)
#: NACC's code for an unknown education level.
EDUCATION_UNKNOWN = "9"

#: cohort -> column -> concept, for the columns with a counterpart in another cohort: what
#: header matching should find.
CONCEPTS: dict[str, dict[str, str]] = {
    "adni": {
        "AGE": "age",
        "PTGENDER": "sex",
        "PTEDUCAT": "education",
        "APOE4": "apoe4",
        "MMSE": "mmse",
        "MOCA": "moca",
        "CDRSB": "cdr_sb",
    },
    "nacc": {
        "NACCAGE": "age",
        "SEX": "sex",
        "EDUC": "education",
        "NACCNE4S": "apoe4",
        "NACCMMSE": "mmse",
        "MOCATOTS": "moca",
        "CDRSUM": "cdr_sb",
        "CDRGLOB": "cdr_global",
    },
    "aibl": {
        "AGE": "age",
        "PTGENDER": "sex",
        "MMSCORE": "mmse",
        "CDGLOBAL": "cdr_global",
    },
}


def education_level(years: str) -> str:
    """A cell of years of education as NACC's level code ("99", unknown, becomes "9")."""
    try:
        value = float(years)
    except ValueError:
        return years
    if years.strip() == "99":
        return EDUCATION_UNKNOWN
    level = 1 + sum(value > bound for bound in EDUCATION_YEARS)
    return str(level)


def reword_rows(cohort: str, rows: list[dict[str, str]]) -> None:
    """Rewrite `rows` in place for independent wording (only NACC's education changes form)."""
    if cohort != "nacc":
        return
    for row in rows:
        row["EDUC"] = education_level(row["EDUC"])


def reword_schema(cohort: str, document: dict) -> dict:
    """The schema document (as parsed YAML) with the cohort's own descriptions and units."""
    columns = {}
    for name, spec in document["columns"].items():
        spec = dict(spec)
        description, unit = INDEPENDENT[cohort].get(name, (spec["description"], spec.get("unit")))
        spec["description"] = description
        spec.pop("unit", None)
        if unit is not None:
            spec["unit"] = unit
        if cohort == "nacc" and name == "EDUC":
            spec = {
                "type": "categorical",
                "description": description,
                "levels": dict(EDUCATION_LEVELS),
                "missing": [int(EDUCATION_UNKNOWN)],
                "covariate": "education",
            }
        columns[name] = spec
    return {**document, "columns": columns}
