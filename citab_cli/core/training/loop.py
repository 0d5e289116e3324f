"""`citab pretrain`: self-supervised image-table pretraining across cohorts.

The loop reads top to bottom: resolve the run, load the cohorts, build the model, then for each
epoch draw a mixed-cohort order, augment, step, log, checkpoint and validate. Every random choice
is derived from (seed, epoch, subject) or (seed, step), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from citab_cli.core import headers, locks
from citab_cli.core.data.project import Project, RunFiles
from citab_cli.core.errors import CitabError
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.model.objective import PretrainingObjective
from citab_cli.core.runtime.augment import augment, sample_parameters, second_view
from citab_cli.core.runtime.dataset import (
    CohortData,
    Collator,
    check_images_match,
    load_cohort,
    without_scan_notes,
)
from citab_cli.core.runtime.device import autocast, image_layout, model_layout, to_device
from citab_cli.core.runtime.distributed import SINGLE, Distributed, Gather
from citab_cli.core.runtime.run_config import PretrainConfig, TrainConfig
from citab_cli.core.training.diagnostics import gradient_norms
from citab_cli.core.training.loader import Prefetcher
from citab_cli.core.training.run import (
    Progress,
    RunWriter,
    SavedRun,
    resolve_config,
)
from citab_cli.core.training.sampling import (
    Schedule,
    epoch_order,
    make_schedule,
    shuffled_pairs,
    step_generator,
    subject_ids,
)
from citab_cli.core.training.schedule import learning_rate
from citab_cli.core.training.validation import BEST_KEYS, better, describe, validate

__all__ = ["Hooks", "PretrainResult", "epoch_order", "pretrain"]


@dataclass
class Hooks:
    """How the loop reports; all optional. `stop(step)` asks for a clean stop after a step."""

    message: Callable[[str], None] = lambda text: None
    start: Callable[[int, int], None] = lambda total, done: None
    step: Callable[[int, dict], None] = lambda step, metrics: None
    stop: Callable[[int], bool] = lambda step: False


@dataclass
class PretrainResult:
    """How a pretraining call ended: run folder, steps, epochs, early stop, best scores."""

    run_dir: Path
    steps: int
    epochs_done: int
    stopped_early: bool
    best: dict = field(default_factory=dict)
    skipped_steps: int = 0


def pretrain(
    project: Project,
    config: PretrainConfig,
    run: str,
    resume: bool = False,
    device: str = "cpu",
    dist: Distributed = SINGLE,
    hooks: Hooks | None = None,
    tensorboard: bool = False,
) -> PretrainResult:
    """Pretrain on `config.cohorts`; `resume` continues `run` from its last state.
    `tensorboard` mirrors the metrics into TensorBoard event files."""
    hooks = hooks or Hooks()
    cohort_names = list(config.cohorts)
    known = project.cohorts()
    unknown = [c for c in cohort_names if c not in known]
    if unknown or not cohort_names:
        raise CitabError(
            f"cohort '{unknown[0] if unknown else ''}' is not ingested in "
            f"{project.root} (ingested: {', '.join(known) or 'none'}); run "
            "`citab ingest` for it, or fix --cohorts"
        )
    files = project.run_files(run)
    directory = files.directory
    restart = False
    if resume and not files.state.is_file():
        if not files.config.is_file():
            raise CitabError(
                f"{directory}: no run to resume (no {files.state.name}); start it without --resume"
            )
        # stopped (e.g. killed) before its first checkpoint: start it again, same folder
        hooks.message(f"run {run} has no checkpoint yet; starting it from the beginning")
        resume, restart = False, True
    if dist.main and not resume and not restart:
        try:
            directory.mkdir(parents=True)
        except FileExistsError:
            raise CitabError(
                f"{directory} already exists; pass --resume to continue it, or choose another --run"
            ) from None
    dist.barrier()
    lock = locks.hold(directory, f"training run '{run}'") if dist.main else contextlib.nullcontext()
    try:
        with lock:
            return _pretrain(project, config, run, resume, device, dist, hooks, files, tensorboard)
    except BaseException:
        # A new run that stopped before its first checkpoint leaves nothing behind.
        if dist.main and not resume and not files.state.exists():
            shutil.rmtree(directory, ignore_errors=True)
        raise


def _build(config: PretrainConfig, target: torch.device) -> tuple[CITab, torch.optim.Optimizer]:
    """The model, seeded by the run's seed, and its Adam optimiser."""
    torch.manual_seed(config.train.seed)
    model = model_layout(build_model(config.model), target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolutions
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.train.learning_rate,
        weight_decay=config.train.weight_decay,
        fused=target.type == "cuda",
    )
    return model, optimizer


def _parallel(
    objective: PretrainingObjective, config: PretrainConfig, dist: Distributed, target
) -> torch.nn.Module:
    """The loss module; under torchrun wrapped in DistributedDataParallel."""
    if dist.world == 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        objective,
        device_ids=[target.index] if target.type == "cuda" else None,
        # the reconstruction heads learn only when MTR is on (the decoder: from the CLS)
        find_unused_parameters=config.model.loss.mtr_weight == 0
        or config.model.loss.mtr_source == "cell"
        or config.model.loss.itm_weight == 0
        or config.model.loss.objective != "citab",  # a baseline reads one side only
    )


def _pretrain(
    project: Project,
    config: PretrainConfig,
    run: str,
    resume: bool,
    device: str,
    dist: Distributed,
    hooks: Hooks,
    files: RunFiles,
    tensorboard: bool = False,
) -> PretrainResult:
    """The run itself, under the run's lock: load, build, restore or start, train, save."""
    saved = SavedRun.open(project, files) if resume else None  # before any header is embedded
    cohort_names = list(config.cohorts)
    cache = headers.ensure_embedded(project, cohort_names, hooks.message, dist.main, dist.barrier)
    table_only = config.train.table_only > 0  # the subjects without a scan join MTR
    cohorts = [load_cohort(project, name, cache, table_only) for name in cohort_names]
    for line in without_scan_notes(cohorts) if dist.main else []:
        hooks.message(line)
    if config.exclude_criteria:
        cohorts = [c.without_criteria() for c in cohorts]
    config = resolve_config(config, project, cache.dim, cohorts)
    check_images_match(cohorts, config.model.image.shape, project.settings_path)
    schedule = make_schedule(config.train, cohorts, dist)
    if schedule.extra and dist.main:
        hooks.message(f"{len(schedule.table_only)} pretraining subject(s) without a scan join "
                      f"the tabular objectives, {schedule.extra} a batch beside its "
                      f"{config.train.batch_size} pairs")  # fmt: skip
    target = torch.device(device)
    model, optimizer = _build(config, target)
    objective = PretrainingObjective(model).to(target)  # the momentum queue on the device too
    writer = RunWriter(
        files,
        config,
        cohorts,
        cache,
        model,
        optimizer,
        schedule.steps_per_epoch,
        dist,
        objective.momentum,
        tensorboard,
    )
    progress = Progress()
    if saved is not None:
        longer = saved.may_resume(config, cohorts, dist.world)
        progress = writer.restore(saved.tensors, saved.document)
        if longer:
            writer.extend()
            hooks.message(
                f"extending {run} from {saved.stored.train.epochs} to {config.train.epochs} "
                f"epochs: the learning-rate schedule is recomputed over {schedule.total_steps} "
                f"steps (warm-up {schedule.warmup_steps}), so the rate at step {progress.step} "
                "rises to where the longer cosine puts it"
            )
        hooks.message(f"resuming {run} at step {progress.step} of {schedule.total_steps}")
    else:
        writer.start()
    writer.environment(project.root, device)
    stopped = _loop(
        objective, optimizer, config, cohorts, schedule, progress, writer, dist, target, hooks
    )
    writer.save_state(progress)
    writer.close()
    dist.barrier()
    epochs_done = progress.step // schedule.steps_per_epoch
    return PretrainResult(
        files.directory, progress.step, epochs_done, stopped, progress.best, progress.skipped
    )


def _loop(
    objective: PretrainingObjective,
    optimizer: torch.optim.Optimizer,
    config: PretrainConfig,
    cohorts: list[CohortData],
    schedule: Schedule,
    progress: Progress,
    writer: RunWriter,
    dist: Distributed,
    target: torch.device,
    hooks: Hooks,
) -> bool:
    """Train from `progress.step` to the end of the schedule; True when asked to stop early."""
    train, cuda = config.train, target.type == "cuda"
    model = objective.model
    step_loss = _parallel(objective, config, dist, target)
    gather = Gather(dist) if dist.world > 1 else None
    collator = Collator.for_model(cohorts, config.model)  # validation reads true pairs
    paired = shuffled_pairs(cohorts, train) if train.pairs == "shuffled" else cohorts
    train_collator = Collator.for_model(paired, config.model)
    hooks.start(schedule.total_steps, progress.step)
    model.train()
    window = _Window()
    while progress.step < schedule.total_steps:
        epoch, offset = divmod(progress.step, schedule.steps_per_epoch)
        batches = schedule.batches(train, epoch, offset, dist)
        pairs = train.batch_size  # then the subjects without a scan, if any
        for items, images, table in Prefetcher(batches, train_collator, pin=cuda, pairs=pairs):
            images = image_layout(images, target)
            table = table.to(target, non_blocking=True)
            images, views = augmented(images, config, epoch, subject_ids(items[:pairs]))
            cohort_ids = to_device(items[:, 0], target)
            rate = learning_rate(
                progress.step, train.learning_rate, schedule.warmup_steps, schedule.total_steps
            )
            for group in optimizer.param_groups:
                group["lr"] = rate
            generator = step_generator(train.seed, progress.step, target)
            with autocast(target):
                losses = step_loss(images, table, cohort_ids, generator, gather, views)
            optimizer.zero_grad(set_to_none=True)
            # backward is queued before the one host sync of the step: the GPU keeps working
            # while the host waits. A non-finite loss gives gradients that are never applied.
            losses["loss"].backward()
            # every rank takes the same decision, or the ones that step wait for the others
            logged = (progress.step + 1) % train.log_every == 0
            if logged or progress.step + 1 == schedule.total_steps:
                losses.update(gradient_norms(model))  # before clipping, on logged steps only
            if dist.all(torch.isfinite(losses["loss"]), target):
                progress.bad_in_a_row = 0
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
            else:
                optimizer.zero_grad(set_to_none=True)
                _skip_bad_step(progress, train, writer)
            progress.step += 1
            window.samples += schedule.per_step
            if progress.step % train.log_every == 0 or progress.step == schedule.total_steps:
                record = window.record(progress, epoch, rate, losses, target)
                writer.log(record)
                hooks.step(progress.step, record)
            else:
                hooks.step(progress.step, {})
            if schedule.validates_after(progress.step):
                if dist.main:  # one process validates; the others wait for it
                    begun = schedule.epochs_begun(progress.step)
                    _validate(
                        model, collator, cohorts, train, target, progress, writer, hooks, begun
                    )
                dist.barrier()
            if progress.step % train.checkpoint_every == 0:
                writer.save_state(progress)
            if dist.any(hooks.stop(progress.step), target):
                return True
    return False


def augmented(
    images: torch.Tensor, config: PretrainConfig, epoch: int, subjects
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's scans augmented for this epoch, and with objective simclr a second
    augmentation of each (its own draws, from the same seed, epoch and subject)."""
    train = config.train
    views = None
    if config.model.loss.objective == "simclr":
        views = second_view(images, train.augment, train.seed, epoch, subjects)
    params = sample_parameters(train.augment, train.seed, epoch, subjects)
    return augment(images, params, train.augment), views


def _skip_bad_step(progress: Progress, train: TrainConfig, writer: RunWriter) -> None:
    """A non-finite loss: skip the update; after `max_bad_steps` in a row, save and stop."""
    progress.skipped += 1
    progress.bad_in_a_row += 1
    if progress.bad_in_a_row >= train.max_bad_steps:
        writer.save_state(progress)
        raise CitabError(
            f"the loss was not finite {progress.bad_in_a_row} steps in a row (at "
            f"step {progress.step}); lower the learning rate (--config) and "
            "resume, or check the input data"
        )


def _validate(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    train: TrainConfig,
    target: torch.device,
    progress: Progress,
    writer: RunWriter,
    hooks: Hooks,
    epoch: int,
) -> None:
    """Score the epoch's model on the val split; keep it as best.safetensors if it is better."""
    scores = validate(model, collator, cohorts, train.batch_size, target, train.seed, train.augment)
    scores.update(step=progress.step, epoch=epoch)
    writer.log({"validation": scores})
    hooks.message(describe(scores))
    if better(scores, progress.best, train.select):
        scores["monitor"] = train.select
        progress.best = {k: scores[k] for k in BEST_KEYS if k in scores}
        writer.save_best(progress, scores)


class _Window:
    """Throughput over the steps since the last logged one."""

    def __init__(self) -> None:
        self.start, self.samples = time.perf_counter(), 0

    def record(
        self,
        progress: Progress,
        epoch: int,
        rate: float,
        losses: dict[str, torch.Tensor],
        device: torch.device,
    ) -> dict:
        elapsed = time.perf_counter() - self.start
        record = {
            "step": progress.step,
            "epoch": epoch,
            "lr": rate,
            **{k: float(v.detach()) if torch.is_tensor(v) else v for k, v in losses.items()},
            "samples_per_s": self.samples / max(elapsed, 1e-9),
            "memory_mb": _memory_mb(device),
            "skipped_steps": progress.skipped,
        }
        self.start, self.samples = time.perf_counter(), 0
        return record


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
