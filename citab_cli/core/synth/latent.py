"""The latent model behind the synthetic cohorts: diagnosis, severity and demographics.

Severity overlaps between classes, so even a perfect reader of the latent severity cannot reach
100%: that is the ceiling written to the truth file. The table and the image each see the
severity through their own noise (`tabular_noise`, `image_noise`), so each alone stays below the
ceiling and the two together do better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("CN", "MCI", "AD")
#: Class means of the latent severity, and its spread within a class.
SEVERITY_MEANS = np.array([0.0, 1.0, 2.0])
SEVERITY_SPREAD = 0.3
TABULAR_NOISE = 0.55
IMAGE_NOISE = 0.45
#: Probability of 0/1/2 APOE e4 alleles per class.
APOE4_BY_CLASS = np.array([[0.72, 0.25, 0.03], [0.50, 0.40, 0.10], [0.35, 0.48, 0.17]])


@dataclass(frozen=True)
class CohortLatents:
    """Per-subject latent variables of one cohort (arrays of length N)."""

    diagnosis: np.ndarray  # int index into CLASSES
    severity: np.ndarray
    severity_tabular: np.ndarray
    severity_image: np.ndarray
    age: np.ndarray  # years at baseline
    female: np.ndarray  # bool
    education: np.ndarray  # years
    apoe4: np.ndarray  # 0, 1, 2


def sample(
    rng: np.random.Generator,
    n: int,
    prevalence: tuple[float, float, float],
    age_mean: float,
    education_mean: float,
    image_signal: float = 1.0,
) -> CohortLatents:
    """`image_signal` is how much of the severity the scans show (1: all of it; below 1 part
    of what the table knows is invisible in the scan, as in clinics where the tests see what
    atrophy does not yet show)."""
    diagnosis = rng.choice(3, size=n, p=np.asarray(prevalence))
    severity = SEVERITY_MEANS[diagnosis] + rng.normal(0, SEVERITY_SPREAD, n)
    age = np.clip(rng.normal(age_mean, 6.5, n) + 1.5 * severity, 55, 95)
    female = rng.random(n) < 0.52
    education = np.clip(np.round(rng.normal(education_mean, 3.0, n)), 6, 22)
    apoe4 = np.array([rng.choice(3, p=APOE4_BY_CLASS[d]) for d in diagnosis])
    return CohortLatents(
        diagnosis=diagnosis,
        severity=severity,
        severity_tabular=severity + rng.normal(0, TABULAR_NOISE, n),
        severity_image=image_signal * severity + rng.normal(0, IMAGE_NOISE, n),
        age=age,
        female=female,
        education=education,
        apoe4=apoe4,
    )


def ceiling_accuracy(latents: CohortLatents, prevalence: tuple[float, float, float]) -> float:
    """Accuracy of the Bayes classifier that reads the latent severity itself."""
    s = latents.severity[:, None]
    log_post = np.log(np.asarray(prevalence))[None] - (s - SEVERITY_MEANS[None]) ** 2 / (
        2 * SEVERITY_SPREAD**2
    )
    return float((log_post.argmax(1) == latents.diagnosis).mean())
