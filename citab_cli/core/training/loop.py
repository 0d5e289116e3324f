"""`citab pretrain`: self-supervised image-table pretraining across cohorts.

The loop reads top to bottom: resolve the run, load the cohorts, build the model, then for each
epoch draw a mixed-cohort order, augment, step, log, checkpoint and validate. Every random choice
is derived from (seed, epoch, subject) or (seed, step), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from citab_cli.core import atomic, headers, locks, yaml_io
from citab_cli.core.data.project import Project
from citab_cli.core.errors import CitabError
from citab_cli.core.model.citab import CITab, build_model
from citab_cli.core.model.objective import PretrainingObjective, pretraining_loss
from citab_cli.core.training import checkpoint
from citab_cli.core.training.augment import augment, sample_parameters
from citab_cli.core.training.config import PretrainConfig
from citab_cli.core.training.dataset import (
    CohortData,
    Collator,
    check_images_match,
    load_cohort,
    subjects_in,
)
from citab_cli.core.training.loader import Prefetcher
from citab_cli.core.training.schedule import learning_rate

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "last.state.safetensors"
#: Subject ids for seeding: cohort index * SUBJECT_STRIDE + row.
SUBJECT_STRIDE = 1_000_000


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed(0, 1, 0)


@dataclass
class Hooks:
    """How the loop reports; all optional. `stop(step)` asks for a clean stop after a step."""

    message: Callable[[str], None] = lambda text: None
    start: Callable[[int, int], None] = lambda total, done: None
    step: Callable[[int, dict], None] = lambda step, metrics: None
    stop: Callable[[int], bool] = lambda step: False


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    stopped_early: bool
    best: dict = field(default_factory=dict)
    skipped_steps: int = 0


def run_dir(project: Project, run: str) -> Path:
    if not run or "/" in run or run.startswith("."):
        raise CitabError(f"'{run}' is not a valid run name; use letters, digits, '-' and '_'")
    return project.runs_dir / run


def newest_run(project: Project) -> str:
    runs = sorted(project.runs(), key=lambda r: (project.runs_dir / r).stat().st_mtime)
    if not runs:
        raise CitabError(f"{project.root} has no runs to resume; start one with `citab pretrain`")
    return runs[-1]


def resolve_config(config: PretrainConfig, project: Project, header_dim: int) -> PretrainConfig:
    """The config as it will run: image shape from the project, header size from the encoder."""
    shape = project.load_settings().image.shape
    model = config.model.model_copy(
        update={
            "header_dim": header_dim,
            "image": config.model.image.model_copy(update={"shape": shape}),
        }
    )
    return config.model_copy(update={"model": model})


def load_run_config(directory: Path) -> PretrainConfig:
    return yaml_io.load_model(directory / CONFIG_FILE, PretrainConfig, "run config")  # type: ignore[return-value]


def _header_cache(
    project: Project, cohorts: list[str], hooks: Hooks, dist: Distributed
) -> headers.HeaderCache:
    settings = project.load_settings()
    texts = [t for t in headers.project_texts(project) if t.cohort in cohorts]
    needed = {headers.text_key(x) for t in texts for x in (t.text, *t.levels)}
    cache = headers.load_cache(project, settings.header_encoder)
    if needed - set(cache.keys):
        if dist.main:
            hooks.message(
                f"header embeddings missing for {settings.header_encoder}: "
                "running embed-headers first"
            )
            headers.embed(project)
        if dist.world > 1:
            torch.distributed.barrier()
        cache = headers.load_cache(project, project.load_settings().header_encoder)
    return cache


def epoch_order(
    items: np.ndarray, sizes: list[int], seed: int, epoch: int, balance: bool
) -> np.ndarray:
    """This epoch's order of (cohort, row) items, deterministic in (seed, epoch).

    Proportional: a shuffle of every subject. Balanced: as many draws, each cohort equally
    likely, subjects within a cohort cycling through a shuffle.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    if not balance:
        return items[rng.permutation(len(items))]
    by_cohort = [items[items[:, 0] == c] for c in range(len(sizes))]
    by_cohort = [rows[rng.permutation(len(rows))] for rows in by_cohort if len(rows)]
    picks = rng.integers(0, len(by_cohort), len(items))
    cursor = [0] * len(by_cohort)
    out = []
    for c in picks:
        rows = by_cohort[c]
        out.append(rows[cursor[c] % len(rows)])
        cursor[c] += 1
    return np.array(out)


def _subject_ids(items: np.ndarray) -> np.ndarray:
    return items[:, 0] * SUBJECT_STRIDE + items[:, 1]


def _step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + step)


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's rows; the gradient of the local rows sums over all ranks' losses."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        ctx.rank, ctx.rows = rank, local.shape[0]
        parts = [torch.empty_like(local) for _ in range(world)]
        torch.distributed.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None, None


class Gather:
    """ITC negatives from every rank: (all rows, where this rank's rows start)."""

    def __init__(self, dist: Distributed):
        self.dist = dist

    def __call__(self, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        gathered = _AllGather.apply(local, self.dist.rank, self.dist.world)
        return gathered, self.dist.rank * local.shape[0]


def _metadata(
    config: PretrainConfig,
    cohorts: list[CohortData],
    cache: headers.HeaderCache,
    step: int,
    epoch: int,
    metrics: dict,
) -> dict:
    return {
        "config": config.model_dump(mode="json"),
        "cohorts": {
            c.name: {"schema_fingerprint": c.schema_fingerprint, "columns": c.columns}
            for c in cohorts
        },
        "header_encoder": {"id": cache.encoder_id, "dim": cache.dim},
        "step": step,
        "epoch": epoch,
        "metrics": metrics,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


def _parameter_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def _check_resumable(
    document: dict,
    config: PretrainConfig,
    cohorts: list[CohortData],
    path: Path,
) -> None:
    if document["config"] != config.model_dump(mode="json"):
        raise CitabError(
            f"{path}: saved with another configuration than {path.parent / CONFIG_FILE}; "
            "restore the run's config.yaml or start a new run"
        )
    for c in cohorts:
        saved = document["cohorts"].get(c.name)
        if saved is None or saved["schema_fingerprint"] != c.schema_fingerprint:
            raise CitabError(
                f"{path}: cohort '{c.name}' was re-ingested with another schema since "
                "this run started; start a new run"
            )


def pretrain(
    project: Project,
    config: PretrainConfig,
    run: str,
    resume: bool = False,
    device: str = "cpu",
    dist: Distributed = SINGLE,
    hooks: Hooks | None = None,
) -> PretrainResult:
    """Pretrain on `config.cohorts`; `resume` continues `run` from its last state."""
    hooks = hooks or Hooks()
    cohort_names = list(config.cohorts)
    # -- the run and its inputs ----------------------------------------------------------------
    known = project.cohorts()
    unknown = [c for c in cohort_names if c not in known]
    if unknown or not cohort_names:
        raise CitabError(
            f"cohort '{unknown[0] if unknown else ''}' is not ingested in "
            f"{project.root} (ingested: {', '.join(known) or 'none'}); run "
            "`citab ingest` for it, or fix --cohorts"
        )
    directory = run_dir(project, run)
    restart = False
    if resume and not (directory / STATE).is_file():
        if not (directory / CONFIG_FILE).is_file():
            raise CitabError(
                f"{directory}: no run to resume (no {STATE}); start it without --resume"
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
    if dist.world > 1:
        torch.distributed.barrier()
    try:
        with (
            locks.hold(directory, f"training run '{run}'")
            if dist.main
            else contextlib.nullcontext()
        ):
            return _pretrain(
                project, config, run, resume, device, dist, hooks, directory, cohort_names
            )
    except BaseException:
        # A new run that stopped before its first checkpoint leaves nothing behind.
        if dist.main and not resume and not (directory / STATE).exists():
            shutil.rmtree(directory, ignore_errors=True)
        raise


def _pretrain(
    project: Project,
    config: PretrainConfig,
    run: str,
    resume: bool,
    device: str,
    dist: Distributed,
    hooks: Hooks,
    directory: Path,
    cohort_names: list[str],
) -> PretrainResult:
    saved: tuple[dict, dict] | None = None
    if resume:
        saved = checkpoint.load(directory / STATE, kind=checkpoint.STATE)
        encoder, current = saved[1]["header_encoder"]["id"], project.load_settings().header_encoder
        if encoder != current:
            raise CitabError(
                f"{directory / STATE}: trained with header encoder '{encoder}', the "
                f"project now uses '{current}'; run `citab embed-headers --model` "
                "with the run's encoder, or start a new run"
            )
    cache = _header_cache(project, cohort_names, hooks, dist)
    config = resolve_config(config, project, cache.dim)
    cohorts = [load_cohort(project, name, cache) for name in cohort_names]
    check_images_match(cohorts, config.model.image.shape, project.settings_path)
    train = config.train
    items = subjects_in(cohorts, {"train", "val"} if train.include_val else {"train"})
    per_step = train.batch_size * dist.world
    steps_per_epoch = len(items) // per_step
    if steps_per_epoch == 0:
        raise CitabError(
            f"only {len(items)} pretraining subjects for batches of {per_step}; "
            "lower --batch-size or ingest more subjects"
        )
    total_steps = steps_per_epoch * train.epochs
    warmup = int(round(train.warmup_epochs * steps_per_epoch))

    # -- model and optimiser -------------------------------------------------------------------
    target = torch.device(device)
    torch.manual_seed(train.seed)
    model: CITab = build_model(config.model).to(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolutions
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=train.learning_rate,
        weight_decay=train.weight_decay,
        fused=target.type == "cuda",
    )
    names = _parameter_names(model)
    step, best, skipped = 0, {}, 0
    if resume:
        config_on_disk = load_run_config(directory)
        if config_on_disk != config:
            raise CitabError(
                f"{directory / CONFIG_FILE} differs from the requested configuration; "
                "a resumed run keeps its configuration (drop the changed options)"
            )
        assert saved is not None
        tensors, document = saved
        _check_resumable(document, config, cohorts, directory / STATE)
        model_tensors = {
            k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")
        }
        model.load_state_dict(model_tensors)
        checkpoint.restore_optimizer(optimizer, names, tensors)
        step, best, skipped = document["step"], document.get("best", {}), document.get("skipped", 0)
        hooks.message(f"resuming {run} at step {step} of {total_steps}")
    elif dist.main:
        atomic.write_text(directory / CONFIG_FILE, yaml_io.dump(config.model_dump(mode="json")))
        (directory / METRICS_FILE).write_text("")
    objective: torch.nn.Module = PretrainingObjective(model)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        objective = DistributedDataParallel(
            objective,
            device_ids=[target.index] if target.type == "cuda" else None,
            # the reconstruction head only learns when MTR is on
            find_unused_parameters=config.model.loss.mtr_weight == 0,
        )
    gather = Gather(dist) if dist.world > 1 else None
    collator = Collator(cohorts, config.model.tabular.categorical == "levels")
    sizes = [c.size for c in cohorts]
    metrics_path = directory / METRICS_FILE
    if resume and dist.main:
        _truncate_metrics(metrics_path, step)

    def save_state(kind_best: bool = False, metrics: dict | None = None) -> None:
        if not dist.main:
            return
        epoch_now = step // steps_per_epoch
        meta = _metadata(config, cohorts, cache, step, epoch_now, metrics or {})
        state = _model_state(model)
        if kind_best:
            checkpoint.save(directory / BEST, state, checkpoint.MODEL, meta)
            return
        checkpoint.save(directory / LAST, state, checkpoint.MODEL, meta)
        tensors = {f"model/{k}": v for k, v in state.items()}
        tensors.update(checkpoint.optimizer_tensors(optimizer, names))
        checkpoint.save(
            directory / STATE, tensors, checkpoint.STATE, {**meta, "best": best, "skipped": skipped}
        )

    def log(record: dict) -> None:
        if dist.main:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # -- the loop ------------------------------------------------------------------------------
    hooks.start(total_steps, step)
    model.train()
    bad_in_a_row = 0
    window_start, window_samples = time.perf_counter(), 0
    stopped = False
    while step < total_steps and not stopped:
        epoch, offset = divmod(step, steps_per_epoch)
        order = epoch_order(items, sizes, train.seed, epoch, train.balance_cohorts)
        batches = (
            order[index * per_step : (index + 1) * per_step][
                dist.rank * train.batch_size : (dist.rank + 1) * train.batch_size
            ]
            for index in range(offset, steps_per_epoch)
        )
        for batch_items, images, table in Prefetcher(batches, collator, pin=target.type == "cuda"):
            images = images.to(target, non_blocking=True)
            if target.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last_3d)
            table = table.to(target)
            params = sample_parameters(train.augment, train.seed, epoch, _subject_ids(batch_items))
            images = augment(images, params, train.augment)
            cohort_ids = torch.as_tensor(batch_items[:, 0], device=target)
            rate = learning_rate(step, train.learning_rate, warmup, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = rate
            generator = _step_generator(train.seed, step, target)
            with torch.autocast(target.type, dtype=torch.bfloat16, enabled=target.type == "cuda"):
                losses = objective(images, table, cohort_ids, generator, gather)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(losses["loss"]).item():
                skipped += 1
                bad_in_a_row += 1
                if bad_in_a_row >= train.max_bad_steps:
                    save_state()
                    raise CitabError(
                        f"the loss was not finite {bad_in_a_row} steps in a row (at "
                        f"step {step}); lower the learning rate (--config) and "
                        "resume, or check the input data"
                    )
            else:
                bad_in_a_row = 0
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
            step += 1
            window_samples += per_step
            if step % train.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": step,
                    "epoch": epoch,
                    "lr": rate,
                    **{k: float(v.detach()) for k, v in losses.items()},
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                    "memory_mb": _memory_mb(target),
                    "skipped_steps": skipped,
                }
                log(record)
                hooks.step(step, record)
                window_start, window_samples = time.perf_counter(), 0
            else:
                hooks.step(step, {})
            if step % train.checkpoint_every == 0:
                save_state()
            if hooks.stop(step):
                stopped = True
                break
        else:
            finished_epoch = epoch + 1
            if finished_epoch % train.validate_every == 0 or step == total_steps:
                scores = validate(model, collator, cohorts, train.batch_size, target, train.seed)
                scores.update(step=step, epoch=finished_epoch)
                log({"validation": scores})
                hooks.message(_describe(scores))
                if _better(scores, best):
                    best = {
                        k: scores[k]
                        for k in ("step", "epoch", "val_loss", "val_probe_bacc")
                        if k in scores
                    }
                    save_state(kind_best=True, metrics=scores)
    save_state()
    if dist.world > 1:
        torch.distributed.barrier()
    return PretrainResult(directory, step, step // steps_per_epoch, stopped, best, skipped)


def _better(scores: dict, best: dict) -> bool:
    if not best:
        return True
    if "val_probe_bacc" in scores and "val_probe_bacc" in best:
        return scores["val_probe_bacc"] > best["val_probe_bacc"] or (
            scores["val_probe_bacc"] == best["val_probe_bacc"]
            and scores["val_loss"] < best["val_loss"]
        )
    return scores["val_loss"] < best["val_loss"]


def _describe(scores: dict) -> str:
    text = f"validation after epoch {scores['epoch']}: loss {scores['val_loss']:.4f}"
    if "val_probe_bacc" in scores:
        text += f", probe balanced accuracy {scores['val_probe_bacc']:.3f}"
    return text


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run continues from."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        record_step = record.get("step", record.get("validation", {}).get("step", 0))
        if record_step <= step:
            kept.append(line)
    atomic.write_text(path, "".join(f"{line}\n" for line in kept))


@torch.no_grad()
def embed_subjects(
    model: CITab, collator: Collator, items: np.ndarray, batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Frozen embeddings (multimodal, tabular CLS, pooled image) of `items`, in order."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"multimodal": [], "tabular": [], "image": []}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = torch.from_numpy(collator.images(chunk)).to(device)
        out = model(images, collator.table(chunk).to(device))
        for key in parts:
            parts[key].append(out[key].float().cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros((0, 0)) for k, v in parts.items()}


@torch.no_grad()
def validate(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
    seed: int,
) -> dict:
    """Validation losses (no augmentation) and a quick linear probe of the embeddings."""
    model.eval()
    val = subjects_in(cohorts, {"val"})
    totals: dict[str, float] = {}
    batches = 0
    for start in range(0, len(val), batch_size):
        chunk = val[start : start + batch_size]
        if len(chunk) < 2:
            continue
        images = torch.from_numpy(collator.images(chunk)).to(device)
        losses = pretraining_loss(
            model,
            images,
            collator.table(chunk).to(device),
            torch.as_tensor(chunk[:, 0], device=device),
            _step_generator(seed, start, device),
        )
        for key in ("loss", "itc", "itm"):
            totals[key] = totals.get(key, 0.0) + float(losses[key])
        batches += 1
    scores = {f"val_{k}": v / max(batches, 1) for k, v in totals.items()}
    if not batches:
        scores["val_loss"] = math.inf
    probe = _quick_probe(model, collator, cohorts, batch_size, device)
    if probe is not None:
        scores["val_probe_bacc"] = probe
    model.train()
    return scores


def _quick_probe(
    model: CITab,
    collator: Collator,
    cohorts: list[CohortData],
    batch_size: int,
    device: torch.device,
) -> float | None:
    """Mean over cohorts of the val balanced accuracy of a logistic regression fitted on the
    train embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for ci, cohort in enumerate(cohorts):
        labelled = np.array([label is not None for label in cohort.labels])
        rows = {s: np.nonzero(labelled & (cohort.splits == s))[0] for s in ("train", "val")}
        labels = np.array([label or "" for label in cohort.labels])
        if len(rows["val"]) == 0 or len(set(labels[rows["train"]])) < 2:
            continue
        items = np.concatenate([rows["train"], rows["val"]])
        pairs = np.stack([np.full(len(items), ci), items], 1)
        embeddings = embed_subjects(model, collator, pairs, batch_size, device)["multimodal"]
        n_train = len(rows["train"])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(embeddings[:n_train], labels[rows["train"]])
        predicted = probe.predict(embeddings[n_train:])
        scores.append(balanced_accuracy_score(labels[rows["val"]], predicted))
    return float(np.mean(scores)) if scores else None
