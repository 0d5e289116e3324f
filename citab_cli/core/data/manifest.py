"""What ingest records about a cohort besides its arrays: `manifest.json` (provenance, schema,
preprocessing, column statistics of the train split) and `subjects.csv`."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime, timezone

import numpy as np

from citab_cli import __version__
from citab_cli.core.data.ingest_plan import IngestPlan, IngestResult
from citab_cli.core.scans import preprocess, t1_linear
from citab_cli.core.schema.cohort import CategoricalColumn


def column_stats(values: np.ndarray, spec) -> dict:
    """Train-split statistics of one column: count, missing rate, and mean/sd/range or level
    counts."""
    present = values[~np.isnan(values)]
    stats: dict = {
        "n": int(values.size),
        "missing_rate": float(1 - present.size / max(values.size, 1)),
    }
    if isinstance(spec, CategoricalColumn):
        names = spec.level_names
        counts = (
            np.bincount(present.astype(np.int64), minlength=len(names))
            if present.size
            else np.zeros(len(names), dtype=np.int64)
        )
        stats["counts"] = {name: int(c) for name, c in zip(names, counts, strict=True)}
    elif present.size:
        stats.update(
            mean=float(present.mean()),
            std=float(present.std()),
            min=float(present.min()),
            max=float(present.max()),
        )
    return stats


def manifest(plan: IngestPlan, result: IngestResult) -> dict:
    """manifest.json of a cohort: provenance, schema, preprocessing (the plan), columns and their
    train statistics, QC and warnings (what carrying it out kept and found)."""
    split_of, table = result.split_of, result.table
    pipeline = t1_linear if plan.pipeline == "t1-linear" else preprocess
    train = np.array([s == "train" for s in split_of])
    columns = []
    for j, name in enumerate(table.columns):
        spec = plan.schema.columns[name]
        entry = {
            "name": name,
            "type": spec.type,
            "description": spec.description,
            "criterion": spec.criterion,
            "covariate": spec.covariate,
        }
        if isinstance(spec, CategoricalColumn):
            entry["levels"] = spec.level_names
        else:
            entry.update(
                unit=spec.unit,
                range=list(spec.range) if spec.range else None,
                normalize=spec.normalization,
            )
        entry["train_stats"] = column_stats(table.values[train, j], spec)
        columns.append(entry)
    return {
        "citab_version": __version__,
        "cohort": plan.cohort,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_csv": {"path": str(plan.csv_path.resolve()), "sha256": plan.csv_sha256},
        "images_dir": str(plan.images_root),
        "schema": {
            "source": str(plan.schema_path.resolve()),
            "fingerprint": plan.schema.fingerprint(),
        },
        "preprocessing": {
            **plan.settings.image.model_dump(mode="json"),
            "pipeline": plan.pipeline,
            "version": pipeline.VERSION,
            "steps": pipeline.STEPS,
            "seconds_per_scan": result.seconds,
            "peak_memory_mb_per_process": result.peak_mb or None,
            "determinism": pipeline.DETERMINISM,
        },
        "qc": result.qc,
        "qc_outliers": result.qc_outliers,
        "subjects": len(table.subjects),
        "splits": dict(Counter(split_of)),
        # subjects kept without a scan (--on-missing-image keep), per split
        "without_scan": dict(
            Counter(s for s, path in zip(split_of, result.images, strict=True) if path is None)
        ),
        "split_source": plan.split_source,
        "classes": plan.schema.label.class_names if plan.schema.label else [],
        "label_counts": dict(Counter(label for label in table.labels if label is not None)),
        "columns": columns,
        "absent_columns": [n for n in plan.schema.columns if n not in table.columns],
        "rows": {
            "read": table.rows_read,
            "kept": len(table.subjects),
            "dropped": dict(table.dropped),
        },
        "warnings": result.warnings,
        **({"bids": plan.bids} if plan.bids is not None else {}),
    }


def subjects_csv(plan: IngestPlan, result: IngestResult) -> str:
    """subjects.csv: per subject its row index, split, label, source image and the image's
    sha256 (both blank for a subject without a scan)."""
    table, images = result.table, result.images
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "subject", "split", "label", "image", "image_sha256"])
    for i, subject in enumerate(table.subjects):
        writer.writerow(
            [
                i,
                subject,
                result.split_of[i],
                table.labels[i] or "",
                "" if images[i] is None else images[i].relative_to(plan.images_root).as_posix(),
                result.digests[i],
            ]
        )
    return out.getvalue()


#: The latent columns of citab synth's truth.csv a cohort keeps (in this order).
TRUTH_COLUMNS = ("severity", "severity_tabular", "severity_image")


def synthetic_truth(csv_path, subjects: list[str]) -> str | None:
    """The latents of a synthetic cohort's subjects, as CSV text in subject order, when the
    CSV was written by `citab synth` (its truth.json and truth.csv beside it) and the truth
    covers every subject; else None."""
    import json

    folder = csv_path.parent
    try:
        document = json.loads((folder / "truth.json").read_text())
        with open(folder / "truth.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or "citab_version" not in document:
        return None
    cohort = csv_path.stem.lower()
    by_subject = {r["subject"]: r for r in rows if r.get("cohort") == cohort}
    if not subjects or any(s not in by_subject for s in subjects):
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["subject", *TRUTH_COLUMNS])
    for subject in subjects:
        writer.writerow([subject, *(by_subject[subject].get(c, "") for c in TRUTH_COLUMNS)])
    return out.getvalue()
