"""The three synthetic cohorts, each written the way its real export looks.

Column names, codes, units, missing codes and visit structure follow ADNIMERGE, the NACC UDS
file and AIBL's LONI extract (see the shipped schemas); values come from the latent model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from citab_cli.core.synth.anatomy import Scanner
from citab_cli.core.synth.latent import CohortLatents

Row = dict[str, str]


def _score(
    rng: np.random.Generator,
    severity: float,
    base: float,
    slope: float,
    noise: float,
    lo: float,
    hi: float,
    step: float = 1.0,
) -> float:
    value = base + slope * severity + rng.normal(0, noise)
    return float(np.clip(np.round(value / step) * step, lo, hi))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _maybe(rng: np.random.Generator, value: str, rate: float, code: str = "") -> str:
    return code if rng.random() < rate else value


def _cdr_global(rng: np.random.Generator, severity: float) -> str:
    """Clinical Dementia Rating global score (0, 0.5, 1, 2, 3) from severity."""
    stage = int(np.digitize(severity + rng.normal(0, 0.2), [0.5, 1.6, 2.4, 3.2]))
    return _fmt((0.0, 0.5, 1.0, 2.0, 3.0)[stage])


@dataclass(frozen=True)
class CohortSpec:
    """One synthetic cohort's dialect: prevalence, demographics, columns, codes and scanner."""

    name: str
    prevalence: tuple[float, float, float]
    age_mean: float
    education_mean: float
    scanner: Scanner
    #: (latents, subject index, rng) -> (subject id, rows of the CSV, image path under <cohort>_mri)
    rows: Callable[[CohortLatents, int, np.random.Generator], tuple[str, list[Row], str]]
    #: Feature columns whose values depend on the diagnosis (through severity or APOE), and
    #: columns generated without any link to it: the truth explanations are checked against.
    drivers: tuple[str, ...] = ()
    non_drivers: tuple[str, ...] = ()
    label_column: str = ""  # the column that holds the diagnosis


def _adni_rows(lat: CohortLatents, i: int, rng: np.random.Generator) -> tuple[str, list[Row], str]:
    rid = 1000 + 7 * i + int(rng.integers(0, 7))
    ptid = f"{int(rng.integers(2, 150)):03d}_S_{rid:04d}"
    phase = "ADNI1" if rng.random() < 0.4 else str(rng.choice(["ADNIGO", "ADNI2", "ADNI3"]))
    dx = ("CN", "MCI", "Dementia")[lat.diagnosis[i]]
    year = int(rng.integers(2006, 2020))
    rows = []
    for visit, months in [("bl", 0), ("m06", 6), ("m12", 12)][: int(rng.integers(1, 4))]:
        s = lat.severity_tabular[i] + 0.012 * months
        abeta = rng.normal(1250 - 260 * lat.severity_tabular[i], 220)
        abeta_text = ">1700" if abeta > 1700 else "<200" if abeta < 200 else f"{abeta:.1f}"
        rows.append(
            {
                "RID": str(rid),
                "PTID": ptid,
                "VISCODE": visit,
                "EXAMDATE": f"{year}-{1 + months % 12:02d}-15",
                "COLPROT": phase,
                "DX": _maybe(rng, dx, 0.04),
                "AGE": f"{lat.age[i]:.1f}",
                "PTGENDER": "Female" if lat.female[i] else "Male",
                "PTEDUCAT": _fmt(lat.education[i]),
                "APOE4": _maybe(rng, _fmt(lat.apoe4[i]), 0.03),
                "MMSE": _maybe(rng, _fmt(_score(rng, s, 29.3, -2.6, 0.9, 0, 30)), 0.03),
                "MOCA": "" if phase == "ADNI1" else _fmt(_score(rng, s, 26.0, -3.0, 1.2, 0, 30)),
                "CDRSB": _maybe(rng, _fmt(_score(rng, s, 0.2, 1.7, 0.5, 0, 18, 0.5)), 0.03),
                "ADAS13": _maybe(rng, f"{_score(rng, s, 9.0, 8.5, 3.0, 0, 85, 0.33):.2f}", 0.05),
                "RAVLT_immediate": _maybe(rng, _fmt(_score(rng, s, 45, -9.0, 5.0, 0, 75)), 0.05),
                "FAQ": _maybe(rng, _fmt(_score(rng, s - 0.4, 0.5, 5.0, 1.5, 0, 30)), 0.05),
                "ABETA": _maybe(rng, abeta_text, 0.5),
                "IMAGEUID": str(30000 + 11 * i + months),
                "update_stamp": f"{year + 1}-03-01 10:00:00.0",
            }
        )
    image = f"{ptid}/MPRAGE/ADNI_{ptid}_MR_MPRAGE_br_raw_S{20000 + i}_I{30000 + 11 * i}.nii.gz"
    return ptid, rows, image


def _nacc_rows(lat: CohortLatents, i: int, rng: np.random.Generator) -> tuple[str, list[Row], str]:
    naccid = f"NACC{100000 + 37 * i + int(rng.integers(0, 37)):06d}"
    formver = 2 if rng.random() < 0.45 else 3
    if lat.diagnosis[i] == 1 and rng.random() < 0.08:
        udsd = "2"  # impaired, not MCI: no class
    else:
        udsd = ("1", "3", "4")[lat.diagnosis[i]]
    first_visit = int(rng.integers(2005, 2021))  # the UDS began in 2005
    birth = first_visit - int(lat.age[i])
    centre = str(int(rng.integers(1, 40)))
    rows = []
    for visit in range(1, int(rng.integers(1, 4)) + 1):
        s = lat.severity_tabular[i] + 0.15 * (visit - 1)
        done = "-4"  # not collected on this form version

        def test(value: str, rate: float = 0.03) -> str:
            return _maybe(rng, value, rate, str(rng.choice(["95", "96", "97", "98"])))

        rows.append(
            {
                "NACCID": naccid,
                "NACCADC": centre,
                "NACCVNUM": str(visit),
                "PACKET": "I" if visit == 1 else "F",
                "FORMVER": str(formver),
                "VISITYR": str(first_visit + visit - 1),
                "BIRTHYR": str(birth),
                "NACCUDSD": udsd,
                "NACCAGE": str(int(lat.age[i]) + visit - 1),
                "SEX": "2" if lat.female[i] else "1",
                "EDUC": _maybe(rng, _fmt(lat.education[i]), 0.02, "99"),
                "NACCNE4S": _maybe(rng, _fmt(lat.apoe4[i]), 0.05, "9"),
                "NACCMMSE": test(_fmt(_score(rng, s, 29.0, -2.7, 1.0, 0, 30)))
                if formver == 2
                else done,
                "MOCATOTS": _maybe(rng, _fmt(_score(rng, s, 25.5, -3.2, 1.3, 0, 30)), 0.03, "88")
                if formver == 3
                else done,
                "CDRSUM": _fmt(_score(rng, s, 0.2, 1.8, 0.5, 0, 18, 0.5)),
                "CDRGLOB": _cdr_global(rng, s),
                "NACCGDS": _maybe(rng, _fmt(_score(rng, s, 2.0, 0.9, 2.0, 0, 15)), 0.03, "88"),
                "ANIMALS": test(_fmt(_score(rng, s, 21, -4.0, 4.0, 0, 77))),
                "TRAILB": _maybe(
                    rng,
                    _fmt(_score(rng, s, 80, 50, 30, 0, 300)),
                    0.03,
                    str(rng.choice(["995", "996", "997", "998"])),
                ),
                "NACCBMI": _maybe(rng, f"{rng.normal(27, 4):.1f}", 0.04, "888.8"),
            }
        )
    image = f"sub-{naccid}/anat/sub-{naccid}_T1w.nii.gz"
    return naccid, rows, image


def _aibl_rows(lat: CohortLatents, i: int, rng: np.random.Generator) -> tuple[str, list[Row], str]:
    rid = 1 + 3 * i + int(rng.integers(0, 3))
    dx = ("1", "2", "3")[lat.diagnosis[i]]
    dx = str(rng.choice(["-4", "7"])) if rng.random() < 0.03 else dx
    alleles = {0: ["3", str(rng.choice(["2", "3"]))], 1: ["3", "4"], 2: ["4", "4"]}[
        int(lat.apoe4[i])
    ]
    rng.shuffle(alleles)
    exam_year = int(rng.integers(2006, 2014))
    birth = exam_year - int(lat.age[i])
    rows = []
    for visit, months in [("bl", 0), ("m18", 18)][: int(rng.integers(1, 3))]:
        s = lat.severity_tabular[i] + 0.01 * months
        rows.append(
            {
                "RID": str(rid),
                "SITEID": str(int(rng.integers(1, 3))),
                "VISCODE": visit,
                "EXAMDATE": f"{int(rng.integers(1, 13)):02d}/15/{exam_year + months // 12}",
                "PTDOB": f"/{birth}",
                "AGE": f"{exam_year + months / 12 - birth:.0f}",
                "DXCURREN": dx,
                "PTGENDER": "2" if lat.female[i] else "1",
                "APGEN1": _maybe(rng, alleles[0], 0.04, "-4"),
                "APGEN2": alleles[1],
                "MMSCORE": _maybe(rng, _fmt(_score(rng, s, 29.0, -2.8, 1.0, 0, 30)), 0.03, "-4"),
                "CDGLOBAL": _cdr_global(rng, s),
                "LIMMTOTAL": _maybe(rng, _fmt(_score(rng, s, 13, -3.5, 2.5, 0, 25)), 0.05, "-4"),
                "LDELTOTAL": _maybe(rng, _fmt(_score(rng, s, 11, -4.0, 2.5, 0, 25)), 0.05, "-4"),
                "BAT126": _maybe(rng, f"{rng.normal(400, 120):.0f}", 0.1, "-4"),
                "MH16SMOK": _maybe(rng, "1" if rng.random() < 0.4 else "0", 0.02, "-4"),
            }
        )
    image = f"AIBL_{rid}_MR_MPRAGE_I{50000 + i}.nii.gz"
    return str(rid), rows, image


COHORTS: dict[str, CohortSpec] = {
    "adni": CohortSpec(
        "adni",
        (0.32, 0.48, 0.20),
        73.5,
        16.0,
        Scanner(
            intensity=900.0,
            bias=0.1,
            noise=0.03,
            blur=0.0,
            flip=(False, False, False),
            dtype="int16",
        ),
        _adni_rows,
        drivers=("MMSE", "MOCA", "CDRSB", "ADAS13", "RAVLT_immediate", "FAQ", "ABETA", "APOE4"),
        non_drivers=("PTGENDER", "PTEDUCAT"),
        label_column="DX",
    ),
    "nacc": CohortSpec(
        "nacc",
        (0.50, 0.20, 0.30),
        71.0,
        15.5,
        Scanner(
            intensity=250.0,
            bias=0.2,
            noise=0.05,
            blur=0.6,
            flip=(True, False, False),
            dtype="float32",
        ),
        _nacc_rows,
        drivers=(
            "NACCMMSE",
            "MOCATOTS",
            "CDRSUM",
            "CDRGLOB",
            "NACCGDS",
            "ANIMALS",
            "TRAILB",
            "NACCNE4S",
        ),  # fmt: skip
        non_drivers=("SEX", "EDUC", "NACCBMI"),
        label_column="NACCUDSD",
    ),
    "aibl": CohortSpec(
        "aibl",
        (0.65, 0.20, 0.15),
        72.5,
        13.0,
        Scanner(
            intensity=1.0,
            bias=0.12,
            noise=0.04,
            blur=0.5,
            flip=(True, True, False),
            dtype="float32",
        ),
        _aibl_rows,
        drivers=("MMSCORE", "CDGLOBAL", "LIMMTOTAL", "LDELTOTAL", "APGEN1", "APGEN2"),
        non_drivers=("PTGENDER", "BAT126", "MH16SMOK"),
        label_column="DXCURREN",
    ),
}
