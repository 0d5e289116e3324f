"""Objectives against hand-written references and known values."""

from __future__ import annotations

import math

import pytest
import torch

from citab_cli.core.layers.prototype_mixture import balance_penalty
from citab_cli.core.losses.contrastive import itc_loss
from citab_cli.core.losses.matching import hard_negatives, itm_loss
from citab_cli.core.losses.reconstruction import choose_cells, mtr_loss


def reference_itc(image: torch.Tensor, table: torch.Tensor, temperature: float) -> float:
    """CLIP loss written out with loops."""
    n = image.shape[0]
    image = [v / v.norm() for v in image]
    table = [v / v.norm() for v in table]
    total = 0.0
    for i in range(n):
        row = [float(image[i] @ table[j]) / temperature for j in range(n)]
        total += -(row[i] - math.log(sum(math.exp(r) for r in row)))
        col = [float(table[i] @ image[j]) / temperature for j in range(n)]
        total += -(col[i] - math.log(sum(math.exp(c) for c in col)))
    return total / (2 * n)


def test_itc_equals_a_hand_written_reference():
    g = torch.Generator().manual_seed(0)
    image, table = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    loss, logits = itc_loss(image, table, 0.1)
    assert loss.item() == pytest.approx(reference_itc(image, table, 0.1), rel=1e-5)
    assert logits.shape == (6, 6)


@pytest.mark.parametrize("batch", [2, 5, 16])
def test_itc_of_constant_embeddings_is_log_batch(batch: int):
    loss, _ = itc_loss(torch.ones(batch, 4), torch.ones(batch, 4), 0.1)
    assert loss.item() == pytest.approx(math.log(batch), rel=1e-6)


def test_itc_with_gathered_negatives_matches_the_full_batch():
    """This rank holds rows 4-7; another rank's rows 0-3 arrive through `gather`."""
    g = torch.Generator().manual_seed(1)
    image, table = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    n_image = torch.nn.functional.normalize(image)
    n_table = torch.nn.functional.normalize(table)
    remote = iter([n_image[:4], n_table[:4]])  # itc_loss gathers images first, then tables

    def gather(local: torch.Tensor) -> tuple[torch.Tensor, int]:
        return torch.cat([next(remote), local]), 4

    loss, logits = itc_loss(image[4:], table[4:], 0.2, gather)
    targets = torch.arange(4, 8)
    expected = (
        torch.nn.functional.cross_entropy(n_image[4:] @ n_table.T / 0.2, targets)
        + torch.nn.functional.cross_entropy(n_table[4:] @ n_image.T / 0.2, targets)
    ) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(logits, n_image[4:] @ n_table[4:].T / 0.2)


def test_hard_negatives_never_pick_the_positive():
    g = torch.Generator().manual_seed(0)
    for b in (2, 3, 8):
        logits = torch.randn(b, b, generator=g)
        logits.diagonal().add_(50.0)  # the positive is overwhelmingly "hardest"
        for _ in range(200):
            seed = int(torch.randint(0, 10**6, (1,), generator=g))
            tables, images = hard_negatives(logits, torch.Generator().manual_seed(seed))
            assert not (tables == torch.arange(b)).any()
            assert not (images == torch.arange(b)).any()


def test_hard_negatives_follow_the_logits():
    logits = torch.full((4, 4), -10.0)
    logits[0, 2] = 10.0
    tables, _ = hard_negatives(logits, torch.Generator().manual_seed(0))
    assert tables[0] == 2


def test_hard_negatives_stay_within_a_cohort_when_they_can():
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    logits = torch.zeros(6, 6)
    for seed in range(50):
        tables, images = hard_negatives(logits, torch.Generator().manual_seed(seed), groups)
        for i in range(5):  # subject 5 is alone in its cohort: any other subject will do
            assert groups[tables[i]] == groups[i] and groups[images[i]] == groups[i]
        assert tables[5] != 5


def test_itm_loss_known_value():
    scores = torch.zeros(6, 2)
    assert itm_loss(scores, positives=2).item() == pytest.approx(math.log(2))
    perfect = torch.tensor([[0.0, 20.0]] * 2 + [[20.0, 0.0]] * 4)
    assert itm_loss(perfect, positives=2).item() < 1e-6


def test_mtr_loss_against_hand_computed_values():
    prediction = torch.tensor([[1.0, 2.0], [0.0, 5.0]])
    target = torch.tensor([[1.5, 2.0], [1.0, 0.0]])
    numeric_mask = torch.tensor([[True, False], [True, False]])
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, float("-inf")]]])
    level_target = torch.tensor([[0, 0], [0, 0]])
    level_mask = torch.tensor([[False, True], [False, True]])
    numeric = (0.5**2 + 1.0**2) / 2
    categorical = (-math.log(math.exp(2) / (math.exp(2) + 1)) + 0.0) / 2
    loss = mtr_loss(prediction, target, numeric_mask, logits, level_target, level_mask)
    assert loss.item() == pytest.approx((numeric + categorical) / 2, rel=1e-6)
    none = torch.zeros(2, 2, dtype=torch.bool)
    only_numeric = mtr_loss(prediction, target, numeric_mask, logits, level_target, none)
    assert only_numeric.item() == pytest.approx(numeric, rel=1e-6)


def test_choose_cells_only_picks_observed_cells():
    observed = torch.rand(50, 20, generator=torch.Generator().manual_seed(0)) > 0.3
    mask = choose_cells(observed, 0.5, torch.Generator().manual_seed(1))
    assert not (mask & ~observed).any()
    assert 0.35 < mask.sum() / observed.sum() < 0.65


def test_balance_penalty_is_zero_for_even_routing():
    keep = torch.ones(2, 3, dtype=torch.bool)
    assert balance_penalty(torch.full((2, 3, 4), 0.25), keep).item() == pytest.approx(0.0, abs=1e-6)
    skewed = torch.zeros(2, 3, 4)
    skewed[..., 0] = 1
    assert balance_penalty(skewed, keep).item() == pytest.approx(3.0)


def test_hardness_zero_draws_negatives_uniformly():
    logits = torch.zeros(4, 4)
    logits[0, 1] = 50.0  # row 0 would always draw table 1 at full hardness
    counts = torch.zeros(4)
    for seed in range(400):
        tables, _ = hard_negatives(logits, torch.Generator().manual_seed(seed), hardness=0.0)
        counts[tables[0]] += 1
    assert counts[0] == 0 and counts[1:].min() > 100  # never the positive, else uniform
    hard, _ = hard_negatives(logits, torch.Generator().manual_seed(0), hardness=1.0)
    assert hard[0] == 1
