"""Every GPU throughput figure in one run, as JSON: made for a short session on a lent GPU.

    python benchmarks/gpu_suite.py --out $OUT/gpu_suite.json                 # on the GPU
    python benchmarks/gpu_suite.py --device cpu --preset tiny --quick --out suite.json  # rehearsal

Runs from a source tree without installing citab. It first checks what it can import and says
which variants need what is missing; then runs the variants cheapest and safest first, each in
its own process with its own time cap (a variant that runs out of memory, hangs or leaves a
sticky CUDA error cannot cost the ones behind it), torch.compile last:

1. model step at batch 12, bf16 autocast + channels-last-3d (citab's default on CUDA);
2. the same in fp32 without channels-last (the reference's first setting);
3. the default at batch 24, then 48;
4. end to end (`citab pretrain` on a project of random arrays: memory-mapped store, background
   collation, augmentation, the step) at batch 12;
5. the default under torch.compile.

The whole suite fits the caps by construction: the bf16 matmul probe takes a few seconds, and
the caps (`CAPS`, seconds) add up to 560 s; with --budget (default 570 s) a variant whose cap no
longer fits the time left is skipped and said so. The JSON is rewritten after every variant, so
a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # benchmarks/ and the source tree, nothing installed

# DESIGN.md §8: the official release on an H200, paper preset, batch 12, model step only.
REFERENCE = {
    "fp32_samples_per_s": 29.3,
    "fp32_peak_gib": 47.5,
    "bf16_channels_last_samples_per_s": 37.8,
    "bf16_channels_last_peak_gib": 26.4,
    "tflop_per_sample": 1.43,
}
#: What each kind of variant imports beyond the standard library.
NEEDS = {
    "model_step": ("torch", "numpy", "pydantic", "yaml"),
    "end_to_end": ("torch", "numpy", "pydantic", "yaml", "safetensors", "matplotlib"),
}
#: (name, kind, throughput.py arguments, cap in seconds), in the order they run; precision and
#: layout are given, so the CPU rehearsal runs the same bf16 autocast and channels-last paths.
DEFAULT = ["--precision", "bf16", "--layout", "channels-last"]
VARIANTS = (
    ("bf16_cl_b12", "model_step", ["--batch-size", "12", *DEFAULT], 75),
    ("fp32_b12", "model_step", ["--batch-size", "12", "--precision", "fp32", "--layout",
                                "contiguous"], 75),
    ("bf16_cl_b24", "model_step", ["--batch-size", "24", *DEFAULT], 75),
    ("bf16_cl_b48", "model_step", ["--batch-size", "48", *DEFAULT], 75),
    ("end_to_end_b12", "end_to_end", ["--batch-size", "12"], 110),
    ("bf16_cl_compile_b12", "model_step", ["--batch-size", "12", *DEFAULT, "--compile"], 150),
)  # fmt: skip
CAPS = {name: cap for name, _, _, cap in VARIANTS}
#: --quick (the CPU rehearsal): fewer steps and subjects, shorter caps, and torch.compile with
#: the aot_eager backend (it traces as inductor does, without compiling kernels on a CPU).
QUICK = {"steps": 3, "subjects": 12, "cap": 40}


def missing_packages(kind: str) -> list[str]:
    """The packages a kind of variant needs that this Python cannot import."""
    return [name for name in NEEDS[kind] if importlib.util.find_spec(name) is None]


def run_variant(name: str, kind: str, extra: list[str], cap: float, args, out_dir: Path) -> dict:
    """One variant in its own process, killed at `cap` seconds; its JSON, or what went wrong."""
    target = out_dir / f"{name}.json"
    command = [sys.executable, str(HERE / "throughput.py"), "--only", kind,
               "--preset", args.preset, "--device", args.device,
               "--steps", str(args.steps), "--subjects", str(args.subjects),
               "--out", str(target), *extra]  # fmt: skip
    if "--compile" in extra and args.quick:
        command += ["--compile-backend", "aot_eager"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped at its cap of {cap:.0f} s", "wall_s": round(cap, 1)}
    wall = round(time.perf_counter() - started, 1)
    if done.returncode != 0 or not target.is_file():
        return {"error": f"exit status {done.returncode}", "trace": done.stderr[-1500:],
                "wall_s": wall}  # fmt: skip
    result = json.loads(target.read_text())
    return {**result[kind], "wall_s": wall}


def matmul_tflops(device: str) -> float | None:
    """Sustained bf16 matmul rate, to scale the H200 targets to this GPU (None on the CPU)."""
    import torch

    if not device.startswith("cuda"):
        return None
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=["tiny", "small", "paper"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=60, help="per cohort, end to end")
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all variants")
    parser.add_argument("--quick", action="store_true", help="the CPU rehearsal's sizes")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.subjects = QUICK["steps"], QUICK["subjects"]
    started = time.perf_counter()
    report: dict = {"preset": args.preset, "device": args.device, "steps": args.steps,
                    "reference_h200": REFERENCE, "missing": {}, "variants": {}}  # fmt: skip
    for kind in NEEDS:
        missing = missing_packages(kind)
        if missing:
            report["missing"][kind] = missing
    if "torch" not in report["missing"].get("model_step", []):
        import torch

        cuda = args.device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run the rehearsal with --device cpu --quick")
        report["torch"] = torch.__version__
        report["device_name"] = torch.cuda.get_device_name(0) if cuda else "CPU"
        report["bf16_matmul_tflops"] = matmul_tflops(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = args.out.parent / f"{args.out.stem}-variants"
    work.mkdir(exist_ok=True)
    for name, kind, extra, cap in VARIANTS:
        cap = QUICK["cap"] if args.quick else cap
        left = args.budget - (time.perf_counter() - started)
        if report["missing"].get(kind):
            entry = {"skipped": f"missing {', '.join(report['missing'][kind])}"}
        elif cap > left:
            entry = {"skipped": f"its cap of {cap:.0f} s does not fit the {left:.0f} s left"}
        else:
            entry = run_variant(name, kind, extra, cap, args, work)
        report["variants"][name] = entry
        report["wall_s"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"{name}: {_line(entry)}", flush=True)
    return report


def _line(entry: dict) -> str:
    if "samples_per_s" in entry:
        return (f"{entry['samples_per_s']} samples/s, "
                f"{entry.get('peak_memory_gib', '-')} GiB peak, {entry['wall_s']} s")  # fmt: skip
    return entry.get("skipped") or entry.get("error", "?")


if __name__ == "__main__":
    main()
