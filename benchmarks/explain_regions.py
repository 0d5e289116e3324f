"""Where do the scan maps of `citab explain` look? On synthetic cohorts, whose generator puts the
image-visible atrophy in known places (the lateral ventricles enlarge, the hippocampi shrink and
darken), the share of each map's mass that lies in those regions, Grad-CAM against occlusion.

    python benchmarks/explain_regions.py --project demo-output/project [--cohort adni]
        [--subjects 12]

The project must hold a pretraining run (e.g. the demo's). The regions are balls around the
generator's landmarks in world millimetres (ventricles 20 mm, hippocampi 12 mm), read through
the project grid's affine; "chance" is the regions' share of the brain, what a map spread
evenly over the brain would score. Prints one row per method and the time each took.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Radii (mm) of the known regions around the generator's landmarks.
VENTRICLE_RADIUS = 20.0
HIPPOCAMPUS_RADIUS = 12.0


def regions(affine: np.ndarray, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Boolean masks on the project grid: ventricles, hippocampi, and both."""
    from citab_cli.core.synth.anatomy import HIPPOCAMPUS_CENTRES, VENTRICLE_CENTRE

    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    ventricles = np.linalg.norm(world - VENTRICLE_CENTRE, axis=-1) <= VENTRICLE_RADIUS
    hippocampi = np.zeros(shape, bool)
    for centre in HIPPOCAMPUS_CENTRES:
        hippocampi |= np.linalg.norm(world - centre, axis=-1) <= HIPPOCAMPUS_RADIUS
    return {"ventricles": ventricles, "hippocampi": hippocampi, "both": ventricles | hippocampi}


def main() -> None:
    import nibabel as nib

    from citab_cli.core.data.project import Project
    from citab_cli.core.explain import explanation as explain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("demo-output/project"))
    parser.add_argument("--cohort", default="adni")
    parser.add_argument("--subjects", default="12")
    args = parser.parse_args()
    project = Project(args.project)
    settings = project.load_settings().image
    masks = regions(settings.grid_affine(), tuple(settings.shape))
    print(f"project {args.project}, cohort {args.cohort}, grid {settings.shape}")
    print(f"{'method':<10} {'subjects':>8} {'ventricles':>11} {'hippocampi':>11} {'both':>8} "
          f"{'chance':>7} {'fallbacks':>9} {'seconds':>8}")  # fmt: skip
    for method in ("gradcam", "occlusion"):
        start = time.perf_counter()
        result = explain.explain(
            project, "best.safetensors", args.cohort, args.subjects, steps=8,
            device="cpu", scan_method=method,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        document = json.loads((result.folder / "report.json").read_text())
        shares = {name: [] for name in masks}
        chance = []
        for entry in document["subjects"]:
            cam = np.asarray(nib.load(result.folder / entry["gradcam_nifti"]).dataobj, float)
            scan = np.asarray(nib.load(result.folder / entry["image_nifti"]).dataobj, float)
            brain = scan > scan.min() + 1e-3 * (scan.max() - scan.min())
            total = cam.sum() or 1.0
            for name, mask in masks.items():
                shares[name].append(cam[mask].sum() / total)
            chance.append((masks["both"] & brain).sum() / max(brain.sum(), 1))
        fallbacks = sum(bool(e.get("scan_note")) for e in document["subjects"])
        n = len(document["subjects"])
        print(f"{method:<10} {n:>8} {np.mean(shares['ventricles']):>11.3f} "
              f"{np.mean(shares['hippocampi']):>11.3f} {np.mean(shares['both']):>8.3f} "
              f"{np.mean(chance):>7.3f} {fallbacks:>9} {seconds:>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
