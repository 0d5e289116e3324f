"""`citab pretrain`: self-supervised pretraining across cohorts."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from enum import Enum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from citab_cli.commands.console import console, err_console
from citab_cli.commands.options import Device, ProjectOption, default, device_option


class Preset(str, Enum):
    tiny = "tiny"
    small = "small"
    paper = "paper"


class Logger(str, Enum):
    jsonl = "jsonl"
    tensorboard = "tensorboard"


#: The presets' epochs and batch sizes, as --help shows them (a test keeps them in step).
PRESET_EPOCHS = "tiny 2, small 15, paper 300"
PRESET_BATCH = "tiny 8, small 16, paper 12"


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
        None, "--preset", help="Model and training preset. " + default("small")
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
    run: str = RunOption,
    resume: bool = ResumeOption,
    logger: Logger = LoggerOption,
    device: Device = device_option("training"),
    project: Path = ProjectOption,
) -> None:
    """Pretrain one model on several cohorts at once (image-table contrastive and matching)."""
    from citab_cli.core.data.project import Project

    store = Project(project)
    store.load_settings()
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "balance_cohorts": balance_cohorts,
        "include_val": include_val,
    }
    names = [c.strip() for c in cohorts.split(",") if c.strip()] if cohorts else None
    name, config = _resolve_run(store, names, preset, config_file, run, resume, overrides)
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
        torch.distributed.init_process_group("nccl" if target.startswith("cuda") else "gloo")
    try:
        return _train_with_progress(store, config, name, resume, target, dist, tensorboard), dist
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: Which option sets each key of the run configuration (the rest come from --preset/--config).
OPTION_OF = {
    "cohorts": "--cohorts",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
    "train.seed": "--seed",
    "train.balance_cohorts": "--balance-cohorts/--proportional",
    "train.include_val": "--include-val/--train-only",
}


def _resolve_run(store, names, preset, config_file, run, resume, overrides):
    """(run name, configuration): a resumed run's own, or the preset with --config over it."""
    from citab_cli.core.errors import CitabError
    from citab_cli.core.training import run as runs

    if not resume:
        if not names:
            raise CitabError("name the cohorts to pretrain on: --cohorts adni,nacc,aibl")
        chosen = (preset or Preset.small).value
        name = run or f"{chosen}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        return name, _apply(_load_config(chosen, config_file), names, overrides)
    name = run or runs.newest_run(store)
    directory = runs.run_dir(store, name)
    if not (directory / runs.CONFIG_FILE).is_file():
        raise CitabError(f"{directory}: no run to resume; start it without --resume")
    saved = runs.load_run_config(directory)
    _refuse_changes(saved, name, preset, config_file, names, overrides)
    return name, saved


def _refuse_changes(saved, name, preset, config_file, names, overrides) -> None:
    """Options repeated on --resume must equal the run's own settings; name the first change."""
    from citab_cli.core.errors import CitabError
    from citab_cli.core.training.config import differences

    base = saved
    if preset is not None or config_file is not None:
        base = _load_config((preset or Preset.small).value, config_file)
        # the grid and the header size come from the project, not from an option
        model = base.model.model_copy(
            update={"header_dim": saved.model.header_dim, "image": saved.model.image}
        )
        base = base.model_copy(update={"model": model})
    requested = _apply(base, names if names is not None else list(saved.cohorts), overrides)
    changed = differences(saved, requested)
    if not changed:
        return
    key, was, now = changed[0]
    option = OPTION_OF.get(key) or ("--config" if config_file is not None else "--preset")
    more = f" (and {len(changed) - 1} more setting(s))" if len(changed) > 1 else ""
    raise CitabError(
        f"{option} changes {key} of run '{name}' from {was} to {now}{more}; a resumed run keeps "
        f"its settings: drop {option}, or start a new run with another --run"
    )


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
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    show = dist.main
    try:
        with Progress(*columns, console=err_console, disable=not show, transient=True) as bar:
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
    console.print(
        f"Run files: {result.run_dir}/ (config.yaml, metrics.jsonl, curves.png, "
        "environment.json, best.safetensors, last.safetensors, last.state.safetensors)"
    )


def _load_config(preset: str, path: Path | None):
    """The preset, with the keys of the YAML file at `path` (if any) merged over it."""
    from citab_cli.core import yaml_io
    from citab_cli.core.training.config import PretrainConfig, pretrain_preset

    base = pretrain_preset(preset)
    if path is None:
        return base
    return yaml_io.load_model(
        path, PretrainConfig, "pretraining config", defaults=base.model_dump(mode="json")
    )


def _apply(base, cohorts: list[str] | None, overrides: dict):
    train = base.train.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    update = {"train": train}
    if cohorts is not None:
        update["cohorts"] = cohorts
    return base.model_copy(update=update)


def _distributed():
    """The process's place in a torchrun launch (one process when not launched by torchrun)."""
    from citab_cli.core.training.distributed import SINGLE, Distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _device(choice: Device, dist) -> str:
    from citab_cli.core.training.precision import pick_device

    return str(pick_device(choice.value, dist.local_rank))
