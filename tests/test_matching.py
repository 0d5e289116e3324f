"""Image-table matching: the head's threshold-free score, and a toy on which it must learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.losses.matching import match_auc
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import preset
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.training.validation import encode_cohort, matching_auc

E = 12


def test_match_auc_against_a_hand_count():
    # margins (match - no match): true pairs 2, 0; negatives 1, 0, -1, 3
    scores = torch.tensor([[0.0, 2.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # 2 beats 1, 0, -1 (3 of 4); 0 beats -1, ties 0 (1.5 of 4): (3 + 1.5) / 8
    assert match_auc(scores, positives=2).item() == pytest.approx(4.5 / 8)


def test_a_head_that_predicts_the_prior_has_auc_one_half_and_a_perfect_one_auc_one():
    prior = torch.tensor([[1.0, 0.3]]).repeat(6, 1)  # every pair "no match", equally sure
    assert match_auc(prior, positives=2).item() == 0.5
    perfect = torch.tensor([[0.0, 5.0]] * 2 + [[5.0, 0.0]] * 4)
    assert match_auc(perfect, positives=2).item() == 1.0


def _subjects(n: int, generator: torch.Generator, shape) -> tuple[torch.Tensor, TabularBatch]:
    """n subjects of one cohort with three numeric columns; the scan's brightness shows the
    first column, so a true pair and another subject's table can be told apart."""
    values = torch.randn(n, 3, generator=generator)
    headers = torch.randn(1, 3, E, generator=generator).expand(n, -1, -1)
    images = values[:, 0, None, None, None, None] + 0.1 * torch.randn(
        n, 1, *shape, generator=generator
    )
    false = torch.zeros(n, 3, dtype=torch.bool)
    batch = TabularBatch(
        column_vectors=headers.clone(),
        level_vectors=torch.zeros(n, 3, E),
        values=values,
        categorical=false,
        missing=false,
        present=~false,
        level_index=torch.full((n, 3), -1),
    )
    return images, batch


class _Held:
    """The collator interface `encode_cohort` reads, over tensors in memory."""

    def __init__(self, images: torch.Tensor, table: TabularBatch):
        self._images, self._table = images, table

    def images(self, items: np.ndarray) -> np.ndarray:
        return self._images[torch.from_numpy(items[:, 1])].numpy()

    def table(self, items: np.ndarray) -> TabularBatch:
        return self._table.select(torch.from_numpy(items[:, 1]))


def _yardstick(model, held: _Held, items: np.ndarray) -> float:
    cpu = torch.device("cpu")
    return matching_auc(model, [encode_cohort(model, held, items, 16, cpu)], 16, cpu, seed=0)


@pytest.mark.parametrize("hardness", [1.0, 0.1])
def test_matching_learns_when_the_scan_shows_the_table(hardness):
    """Scored against other subjects of the cohort drawn at random (the validation yardstick),
    the head has learned to match; against its hardest negatives, ones the table can barely tell
    from the true one, it looks as if it had learned much less."""
    config = preset("tiny").model_copy(update={"header_dim": E})
    config = config.model_copy(
        update={"image": config.image.model_copy(update={"shape": (16,) * 3})}
    )
    loss = config.loss.model_copy(update={"itm_hardness": hardness, "mtr_weight": 0.0})
    torch.manual_seed(0)
    model = build_model(config.model_copy(update={"loss": loss}))
    g = torch.Generator().manual_seed(0)
    images, table = _subjects(320, g, config.image.shape)  # the last 64 held out
    held = np.stack([np.zeros(64, np.int64), np.arange(256, 320)], 1)
    untrained = _yardstick(model.eval(), _Held(images, table), held)
    optimiser = torch.optim.AdamW(model.train().parameters(), lr=2e-3)
    for _ in range(150):
        rows = torch.randint(0, 256, (16,), generator=g)
        losses = pretraining_loss(model, images[rows], table.select(rows), generator=g)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    model.eval()
    trained = _yardstick(model, _Held(images, table), held)
    assert abs(untrained - 0.5) < 0.1 and trained > 0.62  # chance 0.5
    if hardness == 1.0:
        with torch.no_grad():
            hardest = [
                pretraining_loss(model, images[rows], table.select(rows), generator=g)["itm_auc"]
                for rows in torch.arange(256, 320).split(16)
            ]
        assert torch.stack(hardest).mean().item() < trained - 0.1


@pytest.mark.parametrize("hardness", [0.0, 0.1, 1.0])
def test_itm_negatives_stay_in_the_cohort_when_itc_does(monkeypatch, hardness):
    """With ITC within cohorts the other cohorts' logits are masked; hardness 0 (uniform) must
    still draw within the cohort, not across the whole batch."""
    from citab_cli.core.model import objective

    drawn = []
    original = objective.hard_negatives

    def spy(logits, generator=None, groups=None, hardness=1.0):
        picks = original(logits, generator, groups, hardness)
        drawn.append(picks)
        return picks

    monkeypatch.setattr(objective, "hard_negatives", spy)
    config = preset("tiny")
    loss = config.loss.model_copy(update={"itm_hardness": hardness, "itc_same_cohort": True})
    model = build_model(config.model_copy(update={"header_dim": E, "loss": loss}))
    generator = torch.Generator().manual_seed(0)
    images, batch = _subjects(8, generator, config.image.shape)
    cohorts = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    for step in range(20):
        pretraining_loss(model, images, batch, cohorts, torch.Generator().manual_seed(step))
    for table_for_image, image_for_table in drawn:
        assert torch.equal(cohorts[table_for_image], cohorts)
        assert torch.equal(cohorts[image_for_table], cohorts)
        assert not (table_for_image == torch.arange(8)).any()
