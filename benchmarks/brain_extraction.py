"""Brain extraction, deepbet's `BrainExtraction.run` against citab's forward pass of the same
networks: seconds a scan and how many voxels of the two masks differ. Prints JSON.

Both run on one PyTorch thread, as an ingest worker runs them, one after the other on each of
`--scans` synthetic whole heads (the heads of benchmarks/ingest_scale.py), after one warm-up
scan each.

    python benchmarks/brain_extraction.py --scans 4 --raw-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, for its head writer
from ingest import write_heads  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--raw-size", type=int, default=128, help="scan edge (voxels, 240 mm)")
    args = parser.parse_args(argv)

    import nibabel as nib
    import torch
    from deepbet import BrainExtraction

    from citab_cli.core.scans.brain_extraction import BrainExtractor

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, ours = BrainExtraction(no_gpu=True), BrainExtractor()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_heads(Path(tmp), args.scans, args.raw_size)
        for i, path in enumerate([paths[0], *paths]):  # the first scan warms both up
            image = nib.as_closest_canonical(nib.load(path))
            start = time.perf_counter()
            _, expected, _ = theirs.run(image)
            deepbet_s = time.perf_counter() - start
            start = time.perf_counter()
            mask = ours.mask(image.get_fdata(dtype=np.float32))
            citab_s = time.perf_counter() - start
            expected = np.asarray(expected.dataobj) > 0
            if i:
                rows.append({"scan": path.name, "deepbet_s": round(deepbet_s, 2),
                             "citab_s": round(citab_s, 2), "brain_voxels": int(expected.sum()),
                             "voxels_that_differ": int((mask != expected).sum())})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    report = {
        "scan": f"synthetic whole head, {args.raw_size} voxels a side",
        "threads": 1,
        "median_deepbet_s": statistics.median(r["deepbet_s"] for r in rows),
        "median_citab_s": statistics.median(r["citab_s"] for r in rows),
        "voxels_that_differ": sum(r["voxels_that_differ"] for r in rows),
        "scans": rows,
    }
    report["ratio"] = round(report["median_deepbet_s"] / report["median_citab_s"], 2)
    print(json.dumps({k: v for k, v in report.items() if k != "scans"}, indent=1))
    return report


if __name__ == "__main__":
    main()
