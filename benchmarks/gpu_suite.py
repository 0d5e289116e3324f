"""Every GPU throughput figure in one run, as JSON (for a short session on a lent GPU).

    python benchmarks/gpu_suite.py --out $OUT/gpu_suite.json [--preset paper]

Runs, each in the same process on the same GPU so ratios are comparable:
- the model step at batch 12 in fp32 (the reference's first setting), in bf16 autocast with
  channels-last-3d (citab's default on CUDA), and the default with torch.compile;
- the default model step at batch 12, 24 and 48;
- end to end (memory-mapped store, background collation, augmentation, step) at batch 12.
A variant that fails (e.g. out of memory at batch 48) is recorded with its error; the rest run.
The JSON is rewritten after every variant, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402

# DESIGN.md §8: the official release on an H200, paper preset, batch 12, model step only.
REFERENCE = {
    "fp32_samples_per_s": 29.3,
    "fp32_peak_gib": 47.5,
    "bf16_channels_last_samples_per_s": 37.8,
    "bf16_channels_last_peak_gib": 26.4,
    "tflop_per_sample": 1.43,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this suite measures GPU throughput")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    report = {
        "device_name": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "preset": args.preset,
        "reference_h200": REFERENCE,
        "variants": {},
    }
    matmul = _matmul_tflops(device)
    report["bf16_matmul_tflops"] = matmul

    def record(name: str, fn) -> None:
        start = time.perf_counter()
        try:
            report["variants"][name] = fn()
        except Exception as exc:  # keep going: one failed variant must not lose the others
            report["variants"][name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-1500:],
            }
        report["variants"][name]["wall_s"] = round(time.perf_counter() - start, 1)
        torch.cuda.empty_cache()
        args.out.write_text(json.dumps(report, indent=2))

    step = throughput.model_step
    record(
        "fp32_b12",
        lambda: step(args.preset, device, 12, args.steps, bf16=False, channels_last=False),
    )
    record("bf16_cl_b12", lambda: step(args.preset, device, 12, args.steps))
    record(
        "bf16_cl_compile_b12", lambda: step(args.preset, device, 12, args.steps, compile_model=True)
    )
    for batch in (24, 48):
        record(f"bf16_cl_b{batch}", lambda b=batch: step(args.preset, device, b, args.steps))
    record(
        "end_to_end_b12",
        lambda: throughput.end_to_end(args.preset, device, 12, args.steps, args.subjects),
    )
    print(json.dumps(report, indent=2))
    return report


def _matmul_tflops(device: torch.device) -> float:
    """Sustained bf16 matmul rate, to scale the H200 targets to this GPU."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize(device)
    return round(20 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12, 1)


if __name__ == "__main__":
    main()
