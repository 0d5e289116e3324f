"""Peak memory of one `citab explain` attribution pass (expected gradients over the columns and
Grad-CAM over the scan, `ATTRIBUTION_BATCH` subjects) for a network of a preset at a grid.

    python benchmarks/explain_memory.py [--preset paper] [--grid 128] [--device cpu|cuda]
        [--subjects 8] [--columns 12]

Random weights, random scans and a random table: the memory a pass takes does not depend on what
the network has learned. On CUDA it reports torch's peak allocated memory; on the CPU the
process's peak resident set size (which includes the interpreter and libraries: an upper bound).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class RandomCollator:
    """What `attribute` reads, made up: scans (B, 1, *grid) and a table of `columns` columns."""

    def __init__(self, grid: int, columns: int, dim: int, seed: int = 0):
        self.grid, self.columns, self.dim = grid, columns, dim
        self.rng = np.random.default_rng(seed)

    def images(self, items: np.ndarray) -> np.ndarray:
        """Random stored scans, float16 as the collator gives them."""
        shape = (len(items), 1, self.grid, self.grid, self.grid)
        return self.rng.normal(size=shape).astype(np.float16)

    def table(self, items: np.ndarray):
        """A table of numeric cells with one categorical column."""
        from citab_cli.core.layers.tabular_batch import TabularBatch

        b, c, e = len(items), self.columns, self.dim
        g = torch.Generator().manual_seed(len(items))
        categorical = torch.zeros(b, c, dtype=torch.bool)
        categorical[:, 0] = True
        candidates = torch.randn(b, c, 3, e, generator=g)
        index = torch.zeros(b, c, dtype=torch.long)
        return TabularBatch(
            column_vectors=torch.randn(b, c, e, generator=g),
            level_vectors=candidates[:, :, 0] * categorical[..., None],
            values=torch.randn(b, c, generator=g) * ~categorical,
            categorical=categorical,
            missing=torch.zeros(b, c, dtype=torch.bool),
            present=torch.ones(b, c, dtype=torch.bool),
            level_index=torch.where(categorical, index, torch.full_like(index, -1)),
            level_candidates=candidates,
            candidate_mask=torch.ones(b, c, 3, dtype=torch.bool),
        )


def main() -> None:
    from citab_cli.core.evaluation.classifier import Classifier
    from citab_cli.core.explain.attribute import BASELINES, Settings, attribute
    from citab_cli.core.explain.attribution import localising_stage
    from citab_cli.core.model.citab import build_model
    from citab_cli.core.runtime.run_config import pretrain_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--columns", type=int, default=12)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    config = pretrain_preset(args.preset).model
    shape = (args.grid,) * 3
    config = config.model_copy(update={"image": config.image.model_copy(update={"shape": shape})})
    model = Classifier(build_model(config), 3).to(device).eval()
    collator = RandomCollator(args.grid, args.columns, config.header_dim)
    starts = torch.randn(BASELINES, args.columns, config.tabular.dim, device=device)
    settings = Settings("sample", starts, args.steps, "gradcam", localising_stage(shape))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    attribute(model, collator, np.arange(args.subjects), device, settings)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        what = "peak CUDA memory allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        what = f"peak resident set (before the pass {before:.2f} GiB)"
    print(
        f"preset {args.preset}, grid {args.grid}^3, {args.subjects} subjects, {args.columns} "
        f"columns, --steps {args.steps}, Grad-CAM stage {settings.stage + 1}: {what} "
        f"{peak:.2f} GiB, {seconds:.1f} s on {args.device}"
    )


if __name__ == "__main__":
    main()
