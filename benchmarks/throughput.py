"""Pretraining throughput of a preset. Prints JSON.

- model step: forward + backward + optimiser step of the full objective on synthetic tensors
  already on the device (bf16 autocast and channels-last-3d on CUDA, fp32 on CPU);
- end to end: `citab pretrain` itself on synthetic cohorts ingested at the preset's image shape
  (memory-mapped store, background collation, augmentation on the device, the step);
- achieved TFLOP/s from torch.utils.flop_counter, and peak memory.

    python benchmarks/throughput.py --preset small --device cpu
    python benchmarks/throughput.py --preset paper --device cuda --batch-size 12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch


def _synthetic_batch(
    batch: int, header_dim: int, columns: int = 12, levels: int = 3, device: str = "cpu"
):
    from citab_cli.core.layers.tabular_batch import TabularBatch

    g = torch.Generator().manual_seed(0)
    categorical = torch.zeros(batch, columns, dtype=torch.bool)
    categorical[:, :2] = True
    missing = torch.rand(batch, columns, generator=g) < 0.1
    candidates = torch.randn(batch, columns, levels, header_dim, generator=g)
    index = torch.randint(0, levels, (batch, columns), generator=g)
    chosen = torch.gather(candidates, 2, index[..., None, None].expand(-1, -1, 1, header_dim))[
        :, :, 0
    ]
    return TabularBatch(
        column_vectors=torch.randn(batch, columns, header_dim, generator=g),
        level_vectors=chosen * categorical[..., None],
        values=torch.randn(batch, columns, generator=g) * ~categorical,
        categorical=categorical,
        missing=missing,
        present=torch.ones(batch, columns, dtype=torch.bool),
        level_index=torch.where(categorical, index, torch.full_like(index, -1)),
        level_candidates=candidates,
        candidate_mask=torch.ones(batch, columns, levels, dtype=torch.bool),
    ).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_step(
    preset: str,
    device: torch.device,
    batch: int,
    steps: int,
    bf16: bool | None = None,
    channels_last: bool | None = None,
    compile_model: bool = False,
) -> dict:
    """bf16 and channels_last default to on for CUDA, off for the CPU (as in training)."""
    from citab_cli.core.model.citab import build_model
    from citab_cli.core.model.config import preset as model_preset
    from citab_cli.core.model.objective import PretrainingObjective

    cuda = device.type == "cuda"
    bf16 = cuda if bf16 is None else bf16
    channels_last = cuda if channels_last is None else channels_last
    config = model_preset(preset)
    torch.manual_seed(0)
    model = build_model(config).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    objective = PretrainingObjective(model)
    if compile_model:
        objective = torch.compile(objective)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    images = torch.randn(batch, 1, *config.image.shape, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    table = _synthetic_batch(batch, config.header_dim, device=str(device))

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = objective(images, table, None, torch.Generator(device=device).manual_seed(i))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for i in range(3):  # warm-up (kernel selection, allocator)
        step(i)
    flops = _count_flops(model, config, batch, device, table)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(4 + i)
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:  # the process's peak resident memory
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "bf16": bf16,
        "channels_last": channels_last,
        "compiled": compile_model,
        "samples_per_s": round(batch / seconds, 2),
        "step_ms": round(seconds * 1000, 1),
        "tflop_per_step": round(flops / 1e12, 4),
        "tflops_achieved": round(flops / seconds / 1e12, 3),
        "peak_memory_gib": round(peak, 2),
    }


def _count_flops(model, config, batch: int, device: torch.device, table) -> float:
    """FLOPs of one forward + backward of the objective (fp32, uncompiled)."""
    from torch.utils.flop_counter import FlopCounterMode

    from citab_cli.core.model.objective import pretraining_loss

    images = torch.randn(batch, 1, *config.image.shape, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        pretraining_loss(model, images, table, None, torch.Generator(device=device).manual_seed(0))[
            "loss"
        ].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def end_to_end(preset: str, device: torch.device, batch: int, steps: int, subjects: int) -> dict:
    from citab_cli.core import synth
    from citab_cli.core.data import ingest
    from citab_cli.core.data.project import Project
    from citab_cli.core.model.config import preset as model_preset
    from citab_cli.core.runtime.run_config import pretrain_preset
    from citab_cli.core.training import loop as core
    from citab_cli.core.training.records import read_metrics

    shape = model_preset(preset).image.shape
    with tempfile.TemporaryDirectory() as tmp:
        raw, root = Path(tmp) / "raw", Path(tmp) / "project"
        synth.generate(raw, ["adni", "nacc", "aibl"], subjects, min(max(shape), 64), 0)
        for name in ("adni", "nacc", "aibl"):
            plan = ingest.plan(raw / f"{name}.csv", raw / f"{name}_mri", root, shape=shape)
            ingest.execute(plan, workers=min(8, os.cpu_count() or 1))
        project = Project(root)
        config = pretrain_preset(preset)
        train_subjects = sum(
            project.manifest(n)["splits"].get("train", 0) for n in ("adni", "nacc", "aibl")
        )
        per_epoch = max(train_subjects // batch, 1)
        window = max(steps // 2, 1)
        epochs = max(1, -(-(steps + window) // per_epoch))
        config = config.model_copy(
            update={
                "cohorts": ["adni", "nacc", "aibl"],
                "train": config.train.model_copy(
                    update={
                        "batch_size": batch,
                        "epochs": epochs,
                        "log_every": window,
                        "checkpoint_every": 10**9,
                        "validate_every": 10**9,
                    }
                ),
            }
        )
        core.pretrain(project, config, "bench", device=str(device))
        logged = read_metrics(project.run_files("bench").metrics)
        records = [x for x in logged if "samples_per_s" in x]
        timed = records[1:] or records  # the first window includes start-up
        rate = sum(r["samples_per_s"] for r in timed) / len(timed)
        return {
            "samples_per_s": round(rate, 2),
            "steps": epochs * per_epoch,
            "train_subjects": train_subjects,
        }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument(
        "--subjects", type=int, default=60, help="per synthetic cohort (end to end)"
    )
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)

    from citab_cli.core.runtime.run_config import pretrain_preset

    device = torch.device(args.device)
    batch = args.batch_size or pretrain_preset(args.preset).train.batch_size
    report = {
        "preset": args.preset,
        "device": args.device,
        "batch_size": batch,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision": "bf16 autocast, channels-last-3d" if device.type == "cuda" else "fp32",
        "model_step": model_step(args.preset, device, batch, args.steps),
    }
    if not args.skip_end_to_end:
        e2e = end_to_end(args.preset, device, batch, args.steps, args.subjects)
        e2e["ratio_to_model_step"] = round(
            e2e["samples_per_s"] / report["model_step"]["samples_per_s"], 3
        )
        report["end_to_end"] = e2e
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
