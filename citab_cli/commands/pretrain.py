"""`citab pretrain`: self-supervised pretraining across cohorts."""

from __future__ import annotations

import os
import signal
from enum import Enum
from pathlib import Path

import typer

from citab_cli.commands.console import console, err_console, new_progress
from citab_cli.commands.options import Device, ProjectOption, default, device_option
from citab_cli.core.runtime import presets

#: The presets, as --preset offers them.
Preset = Enum("Preset", {name: name for name in presets.NAMES}, type=str)


class Logger(str, Enum):
    jsonl = "jsonl"
    tensorboard = "tensorboard"


#: The presets' epochs and batch sizes, as --help shows them.
PRESET_EPOCHS = presets.listed("epochs")
PRESET_BATCH = presets.listed("batch_size")


RunOption = typer.Option(
    None,
    "--run",
    "--run-name",
    help="Run name. Under torchrun write --run-name (torchrun takes --run for its own "
    "--run-path). " + default("<preset>-<time>; with --resume, the newest run"),
)
ResumeOption = typer.Option(
    False,
    "--resume",
    help="Continue the run from its last state; other options may repeat the run's own "
    "values but not change them. " + default("off"),
)
CriteriaOption = typer.Option(
    None,
    "--exclude-criteria/--with-criteria",
    help="Leave the columns that define the diagnosis (schema criterion: true) out of "
    "pretraining: they are never tokenised. " + default("--with-criteria"),
)
LoggerOption = typer.Option(
    Logger.jsonl,
    "--logger",
    help="Where metrics go besides runs/<run>/metrics.jsonl and curves.png: tensorboard "
    "also writes event files to runs/<run>/tensorboard/ (needs the tensorboard package).",
)


def pretrain(
    cohorts: str = typer.Option(
        None,
        "--cohorts",
        help="Comma-separated ingested cohorts. "
        + default("none: required for a new run; with --resume, the run's own"),
    ),
    preset: Preset = typer.Option(
        None, "--preset", help="Model and training preset. " + default(presets.DEFAULT)
    ),
    config_file: Path = typer.Option(
        None,
        "--config",
        help="YAML overriding the preset (keys as in the run's config.yaml). "
        + default("none, the preset as it is"),
    ),
    epochs: int = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Passes over the pretraining subjects. " + default(f"the preset's: {PRESET_EPOCHS}"),
    ),
    batch_size: int = typer.Option(
        None,
        "--batch-size",
        min=2,
        help="Subjects per step and process. " + default(f"the preset's: {PRESET_BATCH}"),
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed of every random choice of the run. " + default("0")
    ),
    balance_cohorts: bool = typer.Option(
        None,
        "--balance-cohorts/--proportional",
        help="Equal cohort shares per batch, or shares proportional to cohort size. "
        + default("--proportional"),
    ),
    include_val: bool = typer.Option(
        None,
        "--include-val/--train-only",
        help="Also pretrain on validation subjects. " + default("--train-only"),
    ),
    exclude_criteria: bool = CriteriaOption,
    run: str = RunOption,
    resume: bool = ResumeOption,
    logger: Logger = LoggerOption,
    device: Device = device_option("training"),
    project: Path = ProjectOption,
) -> None:
    """Pretrain one model on several cohorts at once (image-table contrastive and matching)."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.training.run_setup import RunRequest, resolve_run

    store = Project(project)
    store.load_settings()
    request = RunRequest(
        cohorts=[c.strip() for c in cohorts.split(",") if c.strip()] if cohorts else None,
        preset=preset.value if preset is not None else None,
        config_file=config_file,
        run=run,
        resume=resume,
        exclude_criteria=exclude_criteria,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        balance_cohorts=balance_cohorts,
        include_val=include_val,
    )
    name, config = resolve_run(store, request)
    result, dist = _launch(store, config, name, resume, device, logger == Logger.tensorboard)
    if dist.main:
        _print_result(result, name)
    if result.stopped_early and dist.main:
        raise typer.Exit(130)


def _launch(store, config, name: str, resume: bool, device: Device, tensorboard: bool):
    """Run the training in this process (one of several under torchrun): (result, place)."""
    import torch

    dist = _distributed()
    target = _device(device, dist)
    if dist.world > 1:
        from citab_cli.core.runtime.distributed import start_process_group

        start_process_group(target)
    try:
        return _train_with_progress(store, config, name, resume, target, dist, tensorboard), dist
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train_with_progress(
    store, config, name: str, resume: bool, target: str, dist, tensorboard: bool
):
    """Run the loop under a progress bar; the first Ctrl-C asks for a clean stop."""
    from citab_cli.core.training import loop as core

    interrupted = {"flag": False}

    def on_interrupt(signum, frame):  # first Ctrl-C: stop cleanly after this step
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
        err_console.print("[yellow]stopping after this step (Ctrl-C again to abort)...[/]")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    show = dist.main
    try:
        with new_progress("loss", disable=not show) as bar:
            task = bar.add_task(f"pretraining {name}", total=1, loss="")

            def on_step(step: int, metrics: dict) -> None:
                loss = f"loss {metrics['loss']:.4f}" if "loss" in metrics else None
                bar.update(task, completed=step, **({"loss": loss} if loss else {}))

            hooks = core.Hooks(
                message=lambda text: bar.console.print(text) if show else None,
                start=lambda total, done: bar.update(task, total=total, completed=done),
                step=on_step,
                stop=lambda step: interrupted["flag"],
            )
            return core.pretrain(
                store,
                config,
                name,
                resume=resume,
                device=target,
                dist=dist,
                hooks=hooks,
                tensorboard=tensorboard,
            )
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_result(result, name: str) -> None:
    if result.stopped_early:
        console.print(
            f"[yellow]Stopped[/] at step {result.steps}; continue with "
            f"`citab pretrain --resume --run {name}`"
        )
    else:
        console.print(f"[green]Done[/]: {result.steps} steps, {result.epochs_done} epoch(s).")
    if result.best:
        parts = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.best.items()
        )
        console.print(f"Best checkpoint ({parts})")
    if result.skipped_steps:
        console.print(
            f"[yellow]warning:[/] {result.skipped_steps} step(s) skipped for a non-finite loss"
        )
    files = ", ".join(
        sorted(p.name for p in result.run_dir.iterdir() if not p.name.startswith("."))
    )
    console.print(f"Run files: {result.run_dir}/ ({files})")


def _distributed():
    """The process's place in a torchrun launch (one process when not launched by torchrun)."""
    from citab_cli.core.runtime.distributed import SINGLE, Distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _device(choice: Device, dist) -> str:
    from citab_cli.core.runtime.device import pick_device

    return str(pick_device(choice.value, dist.local_rank))
