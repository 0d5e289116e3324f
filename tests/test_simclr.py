"""The image-only SimCLR-style baseline: NT-Xent against a hand-written reference, its cohort
mask and gathered negatives, a second view that is another augmentation, and a pretraining
step that never reads the table."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from citab_cli.core.losses.contrastive import nt_xent_loss
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.objective import pretraining_loss
from citab_cli.core.runtime.augment import AugmentConfig, augment, sample_parameters, second_view
from tests.helpers import make_batch, tiny_model


def _reference(first: list[list[float]], second: list[list[float]], t: float, groups=None):
    """NT-Xent written out: 2B embeddings, each with its other view as the positive and every
    other embedding (of its group) as a negative."""

    def unit(row):
        norm = math.sqrt(sum(x * x for x in row))
        return [x / norm for x in row]

    views = [unit(r) for r in first] + [unit(r) for r in second]
    b = len(first)
    group = (list(groups) * 2) if groups is not None else [0] * (2 * b)
    total = 0.0
    for i in range(2 * b):
        positive = i + b if i < b else i - b
        scores = {
            j: sum(p * q for p, q in zip(views[i], views[j], strict=True)) / t
            for j in range(2 * b)
            if j != i and group[j] == group[i]
        }
        total += -scores[positive] + math.log(sum(math.exp(s) for s in scores.values()))
    return total / (2 * b)


def test_nt_xent_equals_a_hand_written_reference():
    first = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.2], [1.0, 1.0, -0.3]])
    second = torch.tensor([[0.8, 0.2, 0.4], [0.1, 0.9, 0.0], [0.5, 0.6, -0.1]])
    expected = _reference(first.tolist(), second.tolist(), 0.5)
    assert nt_xent_loss(first, second, 0.5).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_within_cohorts_takes_negatives_from_the_same_cohort_only():
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    groups = torch.tensor([0, 0, 1, 1, 1])
    expected = _reference(first.tolist(), second.tolist(), 0.2, groups.tolist())
    assert nt_xent_loss(first, second, 0.2, groups=groups).item() == pytest.approx(
        expected, rel=1e-5
    )
    assert nt_xent_loss(first, second, 0.2).item() != pytest.approx(expected, rel=1e-3)


def test_identical_views_of_far_apart_rows_give_a_loss_near_zero():
    first = torch.eye(4) * 3
    assert nt_xent_loss(first, first.clone(), 0.05).item() < 1e-6


def test_nt_xent_with_gathered_negatives_matches_the_full_batch():
    """This rank holds rows 4-7; another rank's rows 0-3 of both views arrive through `gather`:
    the mean of the two ranks' losses is the loss of the whole batch."""
    g = torch.Generator().manual_seed(1)
    first, second = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    unit_first, unit_second = (torch.nn.functional.normalize(x) for x in (first, second))

    def rank(lo: int, hi: int) -> float:
        others = [i for i in range(8) if not lo <= i < hi]
        assert others == list(range(0, lo)) + list(range(hi, 8))
        remote = iter([unit_first, unit_second])

        def gather(local: torch.Tensor) -> tuple[torch.Tensor, int]:
            full = next(remote).clone()
            full[lo:hi] = local
            return full, lo

        return nt_xent_loss(first[lo:hi], second[lo:hi], 0.3, gather).item()

    whole = nt_xent_loss(first, second, 0.3).item()
    assert (rank(0, 4) + rank(4, 8)) / 2 == pytest.approx(whole, rel=1e-5)


def test_the_second_view_is_another_augmentation_drawn_the_same_way_every_time():
    config = AugmentConfig()
    images = torch.randn(3, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    subjects = np.array([11, 12, 13])
    usual = augment(images, sample_parameters(config, 0, 1, subjects), config)
    views = second_view(images, config, 0, 1, subjects)
    assert not torch.allclose(usual, views)
    torch.testing.assert_close(views, second_view(images, config, 0, 1, subjects))
    again = sample_parameters(config, 0, 1, subjects, stream=0)
    np.testing.assert_array_equal(
        again["theta"], sample_parameters(config, 0, 1, subjects)["theta"]
    )


def test_a_simclr_step_trains_the_image_side_and_never_reads_the_table():
    config = tiny_model("simclr")
    torch.manual_seed(0)
    model = build_model(config)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 1, *config.image.shape, generator=g)
    views = images + 0.1 * torch.randn(images.shape, generator=g)
    batch = make_batch(b=4)
    poisoned = replace(batch, values=torch.full_like(batch.values, float("nan")))  # never read
    cohorts = torch.tensor([0, 0, 1, 1])
    losses = pretraining_loss(model, images, poisoned, cohorts, views=views)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert losses["itc"] == 0 and losses["itm"] == 0 and losses["mtr"] == 0
    assert losses["simclr"] == losses["loss"].detach()
    losses["loss"].backward()
    assert model.image.stem[0].weight.grad.abs().sum() > 0
    assert model.image_projection[0].weight.grad.abs().sum() > 0
    assert model.tabular.tokenizer.adapter.weight.grad is None
    with pytest.raises(ValueError, match="second view"):
        pretraining_loss(model, images, batch, cohorts)


def test_a_run_pretrains_with_the_simclr_objective(embedded):
    """Selected through the configuration, as a study arm does; validation scores it too."""
    import json

    from citab_cli.core.data.project import Project
    from citab_cli.core.training import loop
    from tests.helpers import tiny

    config = tiny(epochs=1, objective="simclr")
    result = loop.pretrain(Project(embedded), config, "simclr")
    assert result.steps > 0 and (result.run_dir / "best.safetensors").is_file()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    logged = [r for r in records if "simclr" in r]
    assert logged and all(math.isfinite(r["simclr"]) for r in logged)
    validated = [r["validation"] for r in records if "validation" in r]
    assert validated and math.isfinite(validated[-1]["val_simclr"])
