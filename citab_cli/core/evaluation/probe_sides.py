"""The two sides of a probe: one cohort's labels and every feature set it is read as (its
embeddings, the raw table and the floor laid out by meaning, the scan's block means, the
oracle), and what each feature set saw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation import catboost_trees, oracle
from citab_cli.core.evaluation.features import (
    FEATURES,
    FLOOR_ROLES,
    IMAGE_BLOCKS,
    image_block_means,
    layout,
    table_features,
)
from citab_cli.core.evaluation.labels import LabelLayout, label_layout
from citab_cli.core.runtime.dataset import CohortData

#: What an embedding that reads the scan saw of it.
SCAN_SEEN = "the stored scan (image-encoder features; no table column)"
#: Blocks per axis of the image block means, as the report records them.
IMAGE_BLOCKS_SEEN = f"{IMAGE_BLOCKS}x{IMAGE_BLOCKS}x{IMAGE_BLOCKS}"


@dataclass(frozen=True)
class Side:
    """One cohort as the training or the test side of an evaluation."""

    cohort: CohortData
    labels: LabelLayout
    features: dict[str, np.ndarray]  # feature set -> (N, F), row i = subject i


def sides(
    train: CohortData,
    test: CohortData,
    embedded: dict[str, dict[str, np.ndarray]],
    message: Callable[[str], None],
    latents: list[np.ndarray | None] = (None, None),
    test_split: bool = True,
) -> tuple[Side, Side, dict]:
    """Both sides' feature sets (the raw table and the floor laid out by meaning, so a head
    fitted on one cohort reads another), and which columns each feature set saw."""
    train_labels = label_layout(train, "probe", test_split)
    test_labels = train_labels if test is train else label_layout(test, "probe")
    if train_labels.classes != test_labels.classes:
        raise CitabError(
            f"cohorts '{train.name}' ({'/'.join(train_labels.classes)}) and '{test.name}' "
            f"({'/'.join(test_labels.classes)}) do not share one class set; map their labels "
            "to the same classes"
        )
    for line in train_labels.describe_gaps(train.name):
        message(line)
    raw = layout([train, test], "text")
    floor = layout([train, test], "role", FLOOR_ROLES)
    if not floor.columns:
        message(
            f"no age/sex/education columns marked (covariate:) in both {train.name} and "
            f"{test.name}: the report has no demographic floor"
        )
    # the oracle reads both sides' synthetic truth, when both have one
    truth = latents if all(latent is not None for latent in latents) else (None, None)
    sides = [
        Side(cohort, labels, table_sets(cohort, embedded[cohort.name], raw, floor, latent))
        for cohort, labels, latent in (
            (train, train_labels, truth[0]),
            (test, test_labels, truth[1]),
        )
    ]
    model_columns = {"train": train.columns, "test": test.columns}
    scan = {"image": SCAN_SEEN}
    with_scan = {**model_columns, **scan}
    seen = {"citab": with_scan, "citab_tabular": model_columns, "citab_image": scan}
    seen.update(random_multimodal=with_scan, random_tabular=model_columns, random_image=scan)
    seen["raw_table"] = seen["raw_table_gbdt"] = {"headers": raw.names()}
    if catboost_trees.available():
        seen["raw_table_catboost"] = seen["raw_table"]
    seen["raw_image"] = {"headers": raw.names(), "image_blocks": IMAGE_BLOCKS_SEEN}
    seen["citab_raw"] = seen["random_raw"] = {**with_scan, "raw_headers": raw.names()}
    if floor.columns:
        seen["floor"] = {"roles": floor.names()}
    if truth[0] is not None:
        seen["oracle"] = {"headers": raw.names(), "truth": oracle.ORACLE_LATENT}
    return sides[0], sides[1], seen


def table_sets(
    cohort: CohortData, embedded: dict, raw, floor, latent: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Every feature set of one cohort, in report order: its embeddings, and the baselines
    that read the raw table (and the scan's block means) laid out by meaning."""
    features = dict(embedded)
    features["raw_table"] = table_features(cohort, raw)
    features["raw_table_gbdt"] = table_features(cohort, raw, native_missing=True)
    if catboost_trees.available():  # the `baselines` extra
        features["raw_table_catboost"] = features["raw_table_gbdt"]
    if cohort.has_scan.all():  # the sets that read a scan (else not fitted: TABLE_FEATURES)
        blocks = image_block_means(cohort)
        features["raw_image"] = np.concatenate([features["raw_table"], blocks], 1)
        features["citab_raw"] = np.concatenate([features["citab"], features["raw_table"]], 1)
    if "random_multimodal" in features and "citab_raw" in features:  # the twin, when embedded
        features["random_raw"] = np.concatenate(
            [features["random_multimodal"], features["raw_table"]], 1
        )
    if floor.columns:
        features["floor"] = table_features(cohort, floor)
    if latent is not None:
        features["oracle"] = oracle.oracle_features(features["raw_table"], latent)
    return {k: features[k] for k in FEATURES if k in features}
