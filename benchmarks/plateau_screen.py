"""The pretraining plateau, screened: the single-seed runs behind docs/results.md §1 ("Why the
runs learned nothing"). Each candidate is one `citab pretrain` of the `tiny` preset on a
project's cohorts, validated every --validate-every steps; the script prints, per candidate,
the label-free validation scores along the run (ITC loss, matching AUC, retrieval R@5) and,
for the last checkpoint and its random twin, how alike the subjects' ITC embeddings are (the
mean cosine between two subjects of a cohort, after the projection heads). A screen, not a
comparison: one seed, scored on the validation split; what it finds is tested with seeds
through `citab study`.

    python benchmarks/plateau_screen.py PROJECT --steps 256 --candidates base,lr3e-3
    python benchmarks/plateau_screen.py PROJECT --steps 768 --candidates base --seed 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

#: Candidate name -> overrides of the run's configuration (merged over the base below).
CANDIDATES: dict[str, dict] = {
    "base": {},
    "lr3e-3": {"train": {"learning_rate": 3e-3}},
    "lr1e-2": {"train": {"learning_rate": 1e-2}},
    "temperature0.2": {"model": {"loss": {"itc_temperature": 0.2}}},
    "temperature0.05": {"model": {"loss": {"itc_temperature": 0.05}}},
    "any-cohort-negatives": {"model": {"loss": {"itc_same_cohort": False}}},
    "cohort-batches": {"train": {"batches": "cohort"}},
    "projection-batchnorm": {"model": {"projection_norm": "batchnorm"}},
    "lr2e-3": {"train": {"learning_rate": 2e-3}},
    "mtr-mask0.5": {"model": {"loss": {"mtr_mask_fraction": 0.5}}},
    "no-mtr": {"model": {"loss": {"mtr_weight": 0.0}}},
    "mtr3": {"model": {"loss": {"mtr_weight": 3.0}}},
    "no-itm": {"model": {"loss": {"itm_weight": 0.0}}},
}


def merge(base: dict, over: dict) -> dict:
    """`over` merged into `base`, key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def candidate_config(names: str, steps: int, validate_every: int) -> dict:
    """A '+'-joined list of candidates, merged over the base run of the controls (at 15% of
    the cells masked for MTR, as when the screens ran)."""
    # the screens ran before MTR's mask fraction became 0.5: their base masks 15% of the cells
    base = {"train": {"steps": steps, "warmup_steps": 16, "batch_size": 16,
                      "validate_every_steps": validate_every},
            "model": {"loss": {"mtr_mask_fraction": 0.15}}}  # fmt: skip
    for name in names.split("+"):
        if name not in CANDIDATES:
            sys.exit(f"unknown candidate '{name}'; choose from {', '.join(CANDIDATES)}")
        base = merge(base, CANDIDATES[name])
    return base


def alike(project: Path, checkpoint: Path) -> dict[str, float]:
    """Mean cosine between two validation subjects of a cohort after the ITC projection heads,
    image and table, for the checkpoint and its random twin (averaged over cohorts)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from citab_cli.core.data.project import Project
    from citab_cli.core.evaluation.probe import random_twin
    from citab_cli.core.runtime.dataset import Collator
    from citab_cli.core.runtime.embedding import cohort_items, encoded_batches
    from citab_cli.core.runtime.pretrained import load_checkpoint, read_cohorts

    store = Project(project)
    loaded = load_checkpoint(store, str(checkpoint))
    cohorts = read_cohorts(store, loaded, list(loaded.config.cohorts), lambda text: None)
    if loaded.config.exclude_criteria:
        cohorts = [c.without_criteria() for c in cohorts]
    collator = Collator.for_model(cohorts, loaded.config.model)
    out = {}
    for name, model in (("trained", loaded.model()), ("random", random_twin(loaded.config))):
        model.eval()
        sums = {"image": [], "table": []}
        for index, cohort in enumerate(cohorts):
            rows = np.nonzero(cohort.splits == "val")[0]
            if len(rows) < 2:
                continue
            image, table = [], []
            with torch.no_grad():
                for i, t in encoded_batches(
                    model, collator, cohort_items(rows, index), 32, torch.device("cpu")
                ):
                    image.append(model.image_projection(i.pooled.float()))
                    table.append(model.tabular_projection(t.cls.float()))
            off = ~torch.eye(len(rows), dtype=torch.bool)
            for key, parts in (("image", image), ("table", table)):
                x = F.normalize(torch.cat(parts), dim=-1)
                sums[key].append(float((x @ x.T)[off].mean()))
        for key, values in sums.items():
            out[f"{name}_{key}_cosine"] = float(np.mean(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--candidates", default="base", help="comma-separated; '+' combines")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--validate-every", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cohorts", default="adni,nacc,aibl")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for names in args.candidates.split(","):
            config = Path(scratch) / f"{names}.yaml"
            config.write_text(yaml.safe_dump(candidate_config(names, args.steps,
                                                              args.validate_every)))  # fmt: skip
            run = f"screen-{names.replace('+', '-')}-{args.steps}-s{args.seed}"
            started = time.perf_counter()
            done = subprocess.run(
                ["citab", "pretrain", "--project", str(args.project), "--cohorts", args.cohorts,
                 "--preset", "tiny", "--exclude-criteria", "--config", str(config), "--run", run,
                 "--seed", str(args.seed)],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode:
                sys.exit(f"{names}: citab pretrain failed:\n{done.stdout[-2000:]}")
            seconds = time.perf_counter() - started
            folder = args.project / "runs" / run
            lines = (folder / "metrics.jsonl").read_text().splitlines()
            curve = [json.loads(line)["validation"] for line in lines if '"validation"' in line]
            result = {"candidate": names, "seed": args.seed, "seconds": round(seconds, 1),
                      "curve": curve}  # fmt: skip
            result.update(alike(args.project, folder / "last.safetensors"))
            results.append(result)
            print(f"{names} (seed {args.seed}, {seconds:.0f} s): step  ITC  AUC  R@5 (chance)")
            for v in curve:
                auc = "-" if v.get("val_itm_auc") is None else f"{v['val_itm_auc']:.2f}"
                recall = f"{v['val_recall_at_5']:.2f} ({v['val_recall_at_5_chance']:.2f})"
                print(f"  {v['step']:5d}  {v['val_itc']:.2f}  {auc}  {recall}")
            print("  mean cosine between subjects, image / table: trained "
                  f"{result['trained_image_cosine']:.3f} / {result['trained_table_cosine']:.3f}, "
                  f"random {result['random_image_cosine']:.3f} / "
                  f"{result['random_table_cosine']:.3f}")  # fmt: skip
            sys.stdout.flush()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
