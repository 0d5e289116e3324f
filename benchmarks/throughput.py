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
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

# run from a source tree without installing citab: the repository root on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    compile_backend: str = "inductor",
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
    objective = PretrainingObjective(model).to(device)
    if compile_model:
        objective = torch.compile(objective, backend=compile_backend)
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
    flops = _count_flops(model, config, batch, device, bf16, channels_last)
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


#: Batch at which FLOPs are counted (then scaled to the variant's batch: every part of a step
#: is linear in the batch but the B x B similarity matrices, a negligible share). Counting at
#: the variant's own batch would hold a second full forward and backward in memory: at batch
#: 48 of the paper preset in fp32 that alone is more than an H200 has.
FLOP_BATCH = 2


def _count_flops(
    model, config, batch: int, device: torch.device, bf16: bool, channels_last: bool
) -> float:
    """FLOPs of one forward + backward of the objective at `batch`, counted at FLOP_BATCH in
    the variant's precision and layout and scaled."""
    from torch.utils.flop_counter import FlopCounterMode

    from citab_cli.core.model.objective import pretraining_loss

    images = torch.randn(FLOP_BATCH, 1, *config.image.shape, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    table = _synthetic_batch(FLOP_BATCH, config.header_dim, device=str(device))
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        generator = torch.Generator(device=device).manual_seed(0)
        loss = pretraining_loss(model, images, table, None, generator)["loss"]
    with counter:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * batch / FLOP_BATCH


#: Columns of each cohort of the random-arrays project (the first two categorical).
ARRAY_COLUMNS = 12
#: Volumes written at a time into a cohort's images.npy (bounds memory at the paper's size).
ARRAY_CHUNK = 8


def array_project(root: Path, shape: tuple[int, int, int], subjects: int, seed: int = 0):
    """A project of three cohorts of random arrays in the stored layout: what end-to-end
    pretraining reads (memory-mapped float16 volumes, the table, its manifest, a header cache
    of random unit vectors), made without NIfTI files, preprocessing or a sentence encoder, so
    it needs nothing beyond what the model step needs."""
    import numpy as np
    from safetensors.numpy import save_file

    from citab_cli.core import headers
    from citab_cli.core.data.project import (
        IMAGES_FILE,
        MANIFEST_FILE,
        SUBJECTS_FILE,
        TABULAR_FILE,
        Project,
    )
    from citab_cli.core.settings import (
        DEFAULT_HEADER_ENCODER,
        ImageSettings,
        ProjectSettings,
        default_spacing,
    )

    rng = np.random.default_rng(seed)
    project = Project(root)
    root.mkdir(parents=True)
    grid = ImageSettings(shape=shape, spacing=default_spacing(shape))
    project.write_settings(ProjectSettings(image=grid))
    texts: list[str] = []
    for name in ("alpha", "beta", "gamma"):
        folder = project.cohort_dir(name)
        folder.mkdir(parents=True)
        columns = [
            {"name": f"c{j}", "type": "categorical" if j < 2 else "numeric",
             "description": f"measurement {j} of {name}", "criterion": False, "covariate": None,
             **({"levels": ["low", "high"]} if j < 2 else {"unit": None, "range": None,
                "normalize": "zscore", "train_stats": {"mean": 0.0, "std": 1.0}})}
            for j in range(ARRAY_COLUMNS)
        ]  # fmt: skip
        values = rng.normal(size=(subjects, ARRAY_COLUMNS)).astype(np.float32)
        values[:, :2] = rng.integers(0, 2, size=(subjects, 2))
        values[rng.random(values.shape) < 0.1] = np.nan
        save_file({"values": values}, str(folder / TABULAR_FILE))
        images = np.lib.format.open_memmap(folder / IMAGES_FILE, mode="w+", dtype=np.float16,
                                           shape=(subjects, *shape))  # fmt: skip
        for start in range(0, subjects, ARRAY_CHUNK):
            part = rng.standard_normal((min(ARRAY_CHUNK, subjects - start), *shape), np.float32)
            images[start : start + len(part)] = part
        images.flush()
        splits = [
            "train" if i % 10 < 7 else "val" if i % 10 == 7 else "test" for i in range(subjects)
        ]
        labels = [("CN", "MCI", "AD")[i % 3] for i in range(subjects)]
        rows = ["index,subject,split,label,image,image_sha256"]
        rows += [
            f"{i},{name}{i},{split},{label},{name}{i}.npy,random"  # every subject has a scan
            for i, (split, label) in enumerate(zip(splits, labels, strict=True))
        ]
        (folder / SUBJECTS_FILE).write_text("\n".join(rows) + "\n")
        manifest = {"cohort": name, "columns": columns, "classes": ["CN", "MCI", "AD"],
                    "schema": {"fingerprint": f"random-{name}"}, "subjects": subjects,
                    "splits": {s: splits.count(s) for s in ("train", "val", "test")},
                    "label_counts": {c: labels.count(c) for c in ("CN", "MCI", "AD")},
                    "warnings": [], "created": ""}  # fmt: skip
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
        for c in columns:
            texts.append(headers.column_text(c["description"], c.get("unit")))
            texts += [headers.level_text(c["description"], lv) for lv in c.get("levels", [])]
    vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [headers.text_key(x) for x in texts]
    cache = headers.HeaderCache(DEFAULT_HEADER_ENCODER, keys, texts, vectors)
    headers.save_cache(project, cache)
    return project


def end_to_end(
    preset: str,
    device: torch.device,
    batch: int,
    steps: int,
    subjects: int,
    bf16: bool | None = None,
    channels_last: bool | None = None,
) -> dict:
    """`citab pretrain` itself (the memory-mapped store, background collation, augmentation on
    the device, the step) on a project of random arrays at the preset's image shape; bf16 and
    channels-last follow the device as in training (the loop decides; the flags are recorded)."""
    from citab_cli.core.model.config import preset as model_preset
    from citab_cli.core.runtime.run_config import pretrain_preset
    from citab_cli.core.training import loop as core
    from citab_cli.core.training.records import read_metrics

    shape = tuple(model_preset(preset).image.shape)
    with tempfile.TemporaryDirectory() as tmp:
        project = array_project(Path(tmp) / "project", shape, subjects)
        cohorts = project.cohorts()
        config = pretrain_preset(preset)
        train_subjects = sum(project.manifest(n)["splits"].get("train", 0) for n in cohorts)
        per_epoch = max(train_subjects // batch, 1)
        window = max(steps // 2, 1)
        epochs = max(1, -(-(steps + window) // per_epoch))
        train = config.train.model_copy(
            update={
                "batch_size": batch,
                "epochs": epochs,
                "log_every": window,
                "checkpoint_every": 10**9,
                "validate_every": 10**9,
            }
        )
        config = config.model_copy(update={"cohorts": cohorts, "train": train})
        started = time.perf_counter()
        core.pretrain(project, config, "bench", device=str(device))
        logged = read_metrics(project.run_files("bench").metrics)
        records = [x for x in logged if "samples_per_s" in x]
        timed = records[1:] or records  # the first window includes start-up
        rate = sum(r["samples_per_s"] for r in timed) / len(timed)
        return {
            "samples_per_s": round(rate, 2),
            "steps": epochs * per_epoch,
            "train_subjects": train_subjects,
            "seconds_with_validation": round(time.perf_counter() - started, 1),
        }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument(
        "--subjects", type=int, default=60, help="per cohort of random arrays (end to end)"
    )
    parser.add_argument(
        "--only", choices=["model_step", "end_to_end"], help="measure one of the two"
    )
    parser.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        help="model step: default bf16 on CUDA, fp32 on CPU",
    )
    parser.add_argument(
        "--layout",
        choices=["channels-last", "contiguous"],
        help="model step: default channels-last-3d on CUDA, contiguous on CPU",
    )
    parser.add_argument("--compile", action="store_true", help="model step under torch.compile")
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (with --compile)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    from citab_cli.core.runtime.presets import TRAIN

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or int(TRAIN[args.preset]["batch_size"])
    report = {
        "preset": args.preset,
        "device": args.device,
        "batch_size": batch,
        "device_name": torch.cuda.get_device_name(device)
        if cuda
        else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "citab_source": str(Path(sys.modules["citab_cli"].__file__).parent)
        if "citab_cli" in sys.modules
        else None,
    }
    if args.only in (None, "model_step"):
        bf16 = None if args.precision is None else args.precision == "bf16"
        channels_last = None if args.layout is None else args.layout == "channels-last"
        report["model_step"] = model_step(
            args.preset,
            device,
            batch,
            args.steps,
            bf16,
            channels_last,
            args.compile,
            args.compile_backend,
        )
    if args.only in (None, "end_to_end"):
        e2e = end_to_end(args.preset, device, batch, args.steps, args.subjects)
        if "model_step" in report:
            e2e["ratio_to_model_step"] = round(
                e2e["samples_per_s"] / report["model_step"]["samples_per_s"], 3
            )
        report["end_to_end"] = e2e
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
