"""The tabular-only SCARF-style baseline: cells replaced from rows of the same cohort only, its
loss against a hand-written reference, and a pretraining step that never reads the scan."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from citab_cli.core.losses.contrastive import itc_loss
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import ModelConfig, preset
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.model.scarf import corrupt, donors
from tests.helpers import make_batch, tiny_model


def test_donors_come_from_the_same_cohort_and_never_the_row_itself():
    cohorts = torch.tensor([0, 0, 1, 1, 1, 2])
    for seed in range(20):
        picked = donors(cohorts, 6, torch.Generator().manual_seed(seed))
        assert torch.equal(cohorts[picked], cohorts)
        assert picked[5] == 5  # alone in its cohort: its own row
        assert (picked[:5] != torch.arange(5)).all()


def test_corruption_replaces_cells_with_the_donors_cells_only_where_chosen():
    batch = make_batch(b=6, c=5, seed=1)
    cohorts = torch.tensor([0, 0, 0, 1, 1, 1])
    corrupted, chosen = corrupt(batch, 0.5, cohorts, torch.Generator().manual_seed(3))
    assert chosen.any() and not chosen.all()
    assert not (chosen & ~batch.present).any()  # padding is never a cell to replace
    for i in range(6):
        for j in range(5):
            same = torch.equal(corrupted.level_vectors[i, j], batch.level_vectors[i, j])
            if not chosen[i, j]:
                assert same and corrupted.values[i, j] == batch.values[i, j]
            else:  # the value is one of its cohort's rows' cell in that column
                rows = (cohorts == cohorts[i]).nonzero().flatten()
                assert any(corrupted.values[i, j] == batch.values[k, j] for k in rows)
    assert torch.equal(corrupted.column_vectors, batch.column_vectors)
    assert torch.equal(corrupted.present, batch.present)


def test_almost_every_cell_is_replaced_at_a_high_fraction():
    batch = make_batch(b=8, c=6, seed=2)
    _, chosen = corrupt(batch, 0.99, None, torch.Generator().manual_seed(0))
    assert chosen.sum() >= 0.9 * batch.present.sum()


def test_scarf_loss_equals_a_hand_written_reference():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    view = torch.tensor([[0.8, 0.2], [0.1, 0.9], [0.5, 0.6]])
    t = 0.5

    def normalise(rows):
        return [[x / math.hypot(*r) for x in r] for r in rows.tolist()]

    a, v = normalise(anchor), normalise(view)
    dot = [[sum(p * q for p, q in zip(x, y, strict=True)) / t for y in v] for x in a]

    def cross_entropy(matrix):
        return sum(
            -matrix[i][i] + math.log(sum(math.exp(x) for x in matrix[i]))
            for i in range(len(matrix))
        ) / len(matrix)

    transposed = [list(col) for col in zip(*dot, strict=True)]
    expected = (cross_entropy(dot) + cross_entropy(transposed)) / 2
    assert itc_loss(anchor, view, t)[0].item() == pytest.approx(expected, rel=1e-5)


def test_a_scarf_step_trains_the_table_and_never_reads_the_scan():
    config = tiny_model("scarf")
    torch.manual_seed(0)
    model = build_model(config)
    images = torch.full((4, 1, *config.image.shape), float("nan"))  # never read
    losses = pretraining_loss(model, images, make_batch(b=4), torch.tensor([0, 0, 1, 1]),
                              torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert losses["itc"] == 0 and losses["itm"] == 0 and losses["mtr"] == 0
    losses["loss"].backward()
    assert model.tabular.tokenizer.adapter.weight.grad.abs().sum() > 0
    assert model.tabular_projection[0].weight.grad.abs().sum() > 0
    assert model.image.stem[0].weight.grad is None


def test_the_objective_round_trips_through_yaml():
    config = tiny_model("scarf")
    again = ModelConfig.model_validate(
        yaml.safe_load(yaml.safe_dump(config.model_dump(mode="json")))
    )
    assert again.loss.objective == "scarf" and again == config
    assert preset("tiny").loss.objective == "citab"


def test_a_run_pretrains_with_the_scarf_objective(embedded):
    """Selected through the configuration, as a study arm does."""
    from citab_cli.core.data.project import Project
    from citab_cli.core.training import loop
    from tests.helpers import tiny

    config = tiny(epochs=1, objective="scarf")
    result = loop.pretrain(Project(embedded), config, "scarf")
    assert result.steps > 0 and (result.run_dir / "best.safetensors").is_file()
