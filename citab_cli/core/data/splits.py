"""Subject-level, label-stratified train/val/test splits, fixed at ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.settings import SplitSettings

SPLITS = ("train", "val", "test")


def _counts(n: int, fractions: SplitSettings) -> tuple[int, int, int]:
    """(train, val, test) sizes for a stratum of `n`; test and val get one each once n allows."""
    if n <= 1:
        return n, 0, 0
    n_test = max(1, round(n * fractions.test))
    n_val = max(1, round(n * fractions.val)) if fractions.val > 0 and n >= 3 else 0
    while n - n_test - n_val < 1:
        if n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_test - n_val, n_val, n_test


def assign(subjects: list[str], labels: list[str | None], fractions: SplitSettings) -> list[str]:
    """The split of each subject.

    Stratified by label (unlabelled subjects form their own stratum) and independent of row
    order: subjects are sorted by ID before the seeded shuffle.
    """
    rng = np.random.default_rng(fractions.seed)
    strata: dict[str, list[int]] = {}
    for index in sorted(range(len(subjects)), key=lambda i: subjects[i]):
        key = labels[index] if labels[index] is not None else "\x00unlabelled"
        strata.setdefault(key, []).append(index)
    out = [""] * len(subjects)
    for key in sorted(strata):
        members = strata[key]
        order = rng.permutation(len(members))
        n_train, n_val, _ = _counts(len(members), fractions)
        for rank, pos in enumerate(order):
            split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            out[members[pos]] = split
    return out


def gaps(split_of: list[str], labels: list[str | None]) -> dict[str, list[str]]:
    """split -> the classes (among the labelled subjects) that the split has no subject of."""
    classes = sorted({label for label in labels if label is not None})
    out = {}
    for split in SPLITS:
        have = {label for s, label in zip(split_of, labels, strict=True) if s == split}
        missing = [c for c in classes if c not in have]
        if missing:
            out[split] = missing
    return out


def describe_gaps(found: dict[str, list[str]], labels: list[str | None]) -> list[str]:
    """One warning per split that lacks classes, with how many subjects each class has."""
    counts = {c: sum(label == c for label in labels) for c in {x for x in labels if x}}
    return [
        f"the {split} split has no subject of class "
        + ", ".join(f"{c} ({counts[c]} labelled in all)" for c in missing)
        + "; probes and fine-tuning cannot "
        + ("learn" if split == "train" else "check" if split == "val" else "score")
        + " it there (ingest more subjects or change the split fractions)"
        for split, missing in found.items()
    ]


#: What a splits file may call each split.
SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "validation": "val",
               "valid": "val", "test": "test", "testing": "test"}  # fmt: skip


def read_split_file(path: Path, subjects: list[str]) -> tuple[list[str], list[str]]:
    """Each subject's split from a CSV of subject and split (columns `subject` and `split`, else
    the first two), e.g. a site's official split; and warnings. Every subject must be listed."""
    import csv

    if not path.is_file():
        raise CitabError(f"--splits {path}: file not found; give a CSV of subject,split")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise CitabError(f"{path}: needs a header and rows of subject,split")
    header = [h.strip().lower() for h in rows[0]]
    s = header.index("subject") if "subject" in header else 0
    k = header.index("split") if "split" in header else 1
    given: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(s, k) or not row[s].strip():
            continue
        word = SPLIT_WORDS.get(row[k].strip().lower())
        if word is None:
            raise CitabError(f"{path}:{line}: split '{row[k].strip()}' is not train, val or test")
        subject = row[s].strip()
        if given.setdefault(subject, word) != word:
            raise CitabError(f"{path}:{line}: subject {subject} is given two splits")
    missing = [x for x in subjects if x not in given]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise CitabError(
            f"{path}: {len(missing)} subject(s) of the cohort have no split: {shown}; list every "
            "subject (its id as in the schema's subject column)"
        )
    extra = len(set(given) - set(subjects))
    warnings = [f"{extra} subject(s) of {path.name} are not in the cohort"] if extra else []
    return [given[x] for x in subjects], warnings
