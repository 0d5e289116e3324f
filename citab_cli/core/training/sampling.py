"""What each step sees, derived from the seed alone: the epoch's order of subjects, stable subject
ids for augmentation, and one random generator per step. A resumed run therefore continues
exactly where it stopped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from citab_cli.core.errors import CitabError

if TYPE_CHECKING:
    from citab_cli.core.runtime.dataset import CohortData
    from citab_cli.core.runtime.distributed import Distributed
    from citab_cli.core.runtime.run_config import TrainConfig

#: Subject ids for seeding: cohort index * SUBJECT_STRIDE + row.
SUBJECT_STRIDE = 1_000_000
#: Stream id that separates the epoch order's generator from other uses of (seed, epoch).
EPOCH_ORDER_STREAM = 7
#: Stream id of the derangement of shuffled image-table pairs.
SHUFFLE_STREAM = 11
#: Stream id of the subjects without a scan a step adds to its batch.
TABLE_ONLY_STREAM = 13
#: A step's generator is seeded with seed * STEP_SEED_STRIDE + step (a prime, so distinct
#: (seed, step) pairs of any realistic run never collide).
STEP_SEED_STRIDE = 1_000_003


def epoch_order(
    items: np.ndarray, sizes: list[int], seed: int, epoch: int, balance: bool
) -> np.ndarray:
    """This epoch's order of (cohort, row) items, deterministic in (seed, epoch).

    Proportional: a shuffle of every subject. Balanced: as many draws, each cohort equally
    likely, subjects within a cohort cycling through a shuffle.
    """
    rng = np.random.default_rng([seed, epoch, EPOCH_ORDER_STREAM])
    if not balance:
        return items[rng.permutation(len(items))]
    by_cohort = _shuffled_by_cohort(items, len(sizes), rng)
    picks = rng.integers(0, len(by_cohort), len(items))
    return _cycled(by_cohort, picks, 1)[:, 0]


def _shuffled_by_cohort(items: np.ndarray, cohorts: int, rng: np.random.Generator):
    """Each non-empty cohort's (cohort, row) items, shuffled."""
    by_cohort = [items[items[:, 0] == c] for c in range(cohorts)]
    return [rows[rng.permutation(len(rows))] for rows in by_cohort if len(rows)]


def _cycled(by_cohort: list[np.ndarray], picks: np.ndarray, size: int) -> np.ndarray:
    """(len(picks), size, 2): for each pick, the next `size` items of that cohort, each cohort
    cycling through its own order."""
    cursor = [0] * len(by_cohort)
    out = np.empty((len(picks), size, 2), dtype=by_cohort[0].dtype)
    for index, c in enumerate(picks):
        rows = by_cohort[c]
        out[index] = rows[(cursor[c] + np.arange(size)) % len(rows)]
        cursor[c] += size
    return out


def subject_ids(items: np.ndarray) -> np.ndarray:
    """(B, 2) [cohort, row] -> (B,) ids that stay the same whatever else was ingested."""
    return items[:, 0] * SUBJECT_STRIDE + items[:, 1]


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one step's random draws (ITM negatives, MTR masks) on `device`."""
    return torch.Generator(device=device).manual_seed(int(seed) * STEP_SEED_STRIDE + step)


def cohort_batches(
    items: np.ndarray, sizes: list[int], size: int, seed: int, epoch: int, balance: bool
) -> np.ndarray:
    """This epoch's batches of `size` (cohort, row) items, each from one cohort, as (N, size, 2),
    deterministic in (seed, epoch); N = len(items) // size, as with mixed batches.

    Each cohort's subjects are shuffled and cut into batches, its last batch filled from its
    own start, so a cohort of n subjects gives ceil(n / size) batches; the batches are then
    shuffled and the first N kept. Proportional: a cohort's share of the epoch's batches is its
    share of the subjects (up to one batch). Balanced: each batch's cohort drawn equally, the
    cohort's subjects cycling through its shuffle."""
    rng = np.random.default_rng([seed, epoch, EPOCH_ORDER_STREAM])
    by_cohort = _shuffled_by_cohort(items, len(sizes), rng)
    wanted = len(items) // size
    if balance:
        picks = rng.integers(0, len(by_cohort), wanted)
    else:
        picks = np.concatenate(
            [np.full(-(-len(rows) // size), c) for c, rows in enumerate(by_cohort)]
        )
        picks = picks[rng.permutation(len(picks))][:wanted]
    return _cycled(by_cohort, picks, size)


@dataclass(frozen=True)
class Schedule:
    """Which subjects each step of the run sees."""

    items: np.ndarray  # (M, 2) [cohort, row] of every pretraining subject
    sizes: list[int]  # subjects per cohort
    per_step: int  # subjects per step over all processes
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    validate_every: int  # optimiser steps between validations
    #: (K, 2) [cohort, row] of the pretraining subjects without a scan, and how many of them
    #: each process adds to each batch after its pairs (0: none)
    table_only: np.ndarray | None = None
    extra: int = 0

    def batches(self, train: TrainConfig, epoch: int, offset: int, dist: Distributed):
        """This process's items for each remaining step of `epoch` (the last epoch of a run
        counted in steps ends where the run does): its batch_size pairs, then `extra` subjects
        without a scan (`table_only_items`)."""
        if train.batches == "cohort":
            order = cohort_batches(
                self.items, self.sizes, self.per_step, train.seed, epoch, train.balance_cohorts
            ).reshape(-1, 2)
        else:
            order = epoch_order(self.items, self.sizes, train.seed, epoch, train.balance_cohorts)
        mine = slice(dist.rank * train.batch_size, (dist.rank + 1) * train.batch_size)
        end = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        for index in range(offset, end):
            pairs = order[index * self.per_step : (index + 1) * self.per_step][mine]
            if not self.extra:
                yield pairs
                continue
            step = epoch * self.steps_per_epoch + index
            extra = table_only_items(self.table_only, self.extra, train.seed, step, dist)
            yield np.concatenate([pairs, extra])

    def validates_after(self, step: int) -> bool:
        """Whether the model is validated once `step` optimiser steps are done."""
        return step % self.validate_every == 0 or step == self.total_steps

    def epochs_begun(self, step: int) -> int:
        """Epochs begun once `step` steps are done (the last one may be cut short)."""
        return -(-step // self.steps_per_epoch)


def make_schedule(train: TrainConfig, cohorts: list[CohortData], dist: Distributed) -> Schedule:
    """The run's schedule: subjects, steps per epoch, warm-up and total steps for this many
    processes."""
    from citab_cli.core.runtime.dataset import subjects_in

    splits = {"train", "val"} if train.include_val else {"train"}
    items = subjects_in(cohorts, splits)
    pool = subjects_in(cohorts, splits, scans=False)
    extra = int(round(train.table_only * train.batch_size)) if len(pool) else 0
    per_step = train.batch_size * dist.world
    steps_per_epoch = len(items) // per_step
    if steps_per_epoch == 0:
        raise CitabError(
            f"only {len(items)} pretraining subjects for batches of {per_step}; "
            "lower --batch-size or ingest more subjects"
        )
    warmup = train.warmup_steps
    if warmup is None:
        warmup = int(round(train.warmup_epochs * steps_per_epoch))
    return Schedule(
        items=items,
        sizes=[c.size for c in cohorts],
        per_step=per_step,
        steps_per_epoch=steps_per_epoch,
        total_steps=train.steps or steps_per_epoch * train.epochs,
        warmup_steps=warmup,
        validate_every=train.validate_every_steps or train.validate_every * steps_per_epoch,
        table_only=pool if extra else None,
        extra=extra,
    )


def table_only_items(
    pool: np.ndarray, count: int, seed: int, step: int, dist: Distributed
) -> np.ndarray:
    """This process's `count` subjects without a scan for step `step`, deterministic in (seed,
    step): every process draws the same world * count from `pool` (without replacement while
    the pool is large enough) and takes its share."""
    rng = np.random.default_rng([seed, step, TABLE_ONLY_STREAM])
    wanted = count * dist.world
    drawn = pool[rng.choice(len(pool), size=wanted, replace=len(pool) < wanted)]
    return drawn[dist.rank * count : (dist.rank + 1) * count]


def shuffled_pairs(cohorts: list[CohortData], train: TrainConfig) -> list[CohortData]:
    """The cohorts with their pretraining subjects' scans deranged within each cohort: row i of
    the table is read with the scan of another pretraining subject of the same cohort, the
    same one at every step (a fixed derangement from the run's seed). Scans outside the
    pretraining splits are never used."""
    splits = ["train", "val"] if train.include_val else ["train"]
    out = []
    for index, cohort in enumerate(cohorts):
        rows = np.nonzero(np.isin(cohort.splits, splits) & cohort.has_scan)[0]
        rng = np.random.default_rng([train.seed, index, SHUFFLE_STREAM])
        cycle = rows[rng.permutation(len(rows))]
        own = np.arange(cohort.size) if cohort.scan_rows is None else cohort.scan_rows
        image_rows = own.copy()  # -1 stays -1: a table-only subject has no scan to swap
        if len(cycle) > 1:
            image_rows[cycle] = own[np.roll(cycle, -1)]  # each row takes the next one's scan
        out.append(cohort.with_image_rows(image_rows))
    return out
