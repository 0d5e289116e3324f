"""How well header texts find their counterparts in synthetic cohorts, with shared wording (the
shipped schemas) and with each cohort describing its columns in its own words
(`citab synth --wording independent`).

Each wording: synthetic cohorts written, ingested, their headers embedded with the project's
sentence encoder (`citab embed-headers`); then, for every column with a counterpart in another
cohort (synth/wording.py, CONCEPTS), whether its nearest header there is that counterpart, the
true pair's cosine, and the margin over the runner-up.

    python benchmarks/synth_wording.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COHORTS = ("adni", "nacc", "aibl")


def matching(project, concepts: dict) -> dict:
    """Top-1 accuracy, margins and misses of the project's nearest-header matches."""
    from citab_cli.core import headers

    result = headers.encode_headers(project)
    true, right, cosines, margins, missed = 0, 0, [], [], []
    vectors = headers.load_cache(project, result.encoder_id)
    texts = {(c.cohort, c.column): c.text for c in headers.project_texts(project)}
    for m in result.matches:
        concept = concepts[m.cohort].get(m.column)
        partner = {v: k for k, v in concepts[m.other_cohort].items()}.get(concept)
        if concept is None or partner is None:
            continue
        true += 1
        a = vectors.vector(texts[(m.cohort, m.column)])
        b = vectors.vector(texts[(m.other_cohort, partner)])
        cosines.append(float(a @ b))
        if m.best == partner:
            right += 1
            margins.append(m.margin)
        else:
            missed.append(f"{m.cohort}:{m.column} -> {m.other_cohort}:{m.best} "
                          f"(not {partner})")  # fmt: skip
    return {
        "pairs": true,
        "top1": right,
        "top1_accuracy": round(right / max(true, 1), 3),
        "true_pair_cosine": [round(min(cosines), 3), round(max(cosines), 3)],
        "mean_margin_when_right": round(sum(margins) / max(len(margins), 1), 3),
        "missed": sorted(missed),
    }


def run(wording: str, folder: Path) -> dict:
    from citab_cli.core import synth
    from citab_cli.core.data import ingest, ingest_execute
    from citab_cli.core.data.project import Project
    from citab_cli.core.synth.wording import CONCEPTS

    raw, root = folder / "raw", folder / "project"
    synth.generate(raw, list(COHORTS), subjects=12, shape=16, seed=0, wording=wording)
    for name in COHORTS:
        plan = ingest.plan(raw / f"{name}.csv", raw / f"{name}_mri", root, shape=(16,) * 3)
        ingest_execute.execute(plan)
    return matching(Project(root), CONCEPTS)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    started = time.time()
    results = {}
    for wording in ("shared", "independent"):
        with tempfile.TemporaryDirectory() as tmp:
            results[wording] = run(wording, Path(tmp))
    results["seconds"] = round(time.time() - started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
