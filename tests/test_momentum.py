"""Momentum encoders and their queue, MTR through the CLS, retrieval recall, the value token."""

from __future__ import annotations

import pytest
import torch

from citab_cli.core.losses.contrastive import itc_loss, itc_queue_loss
from citab_cli.core.model import objective as objectives
from citab_cli.core.model.citab import build_model
from citab_cli.core.model.config import LossConfig, preset
from citab_cli.core.training.validation import recall_chance, retrieval_recall
from tests.helpers import E, make_batch


def _model(**loss):
    config = preset("tiny").model_copy(update={"header_dim": E})
    config = config.model_copy(update={"loss": config.loss.model_copy(update=loss)})
    torch.manual_seed(0)
    return build_model(config)


def test_an_empty_queue_with_keys_equal_to_the_features_is_plain_itc():
    g = torch.Generator().manual_seed(1)
    image, table = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    plain, plain_logits = itc_loss(image, table, 0.1)
    empty = torch.zeros(0, 16)
    queued, logits = itc_queue_loss(image, table, image, table, empty, empty, 0.1)
    torch.testing.assert_close(queued, plain)
    torch.testing.assert_close(logits, plain_logits)
    assert objectives.PretrainingObjective(_model(queue_size=0)).momentum is None


def test_the_queue_adds_negatives_and_raises_the_loss():
    g = torch.Generator().manual_seed(2)
    image, table = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=-1)
    without, _ = itc_queue_loss(image, table, image, table, queue[:0], queue[:0], 0.1)
    with_queue, _ = itc_queue_loss(image, table, image, table, queue, queue, 0.1)
    assert with_queue > without  # more negatives in every row's softmax


def test_momentum_encoders_get_no_gradient_and_follow_their_average():
    model = _model(queue_size=8, momentum=0.9)
    step = objectives.PretrainingObjective(model)
    mirror = step.momentum
    before = [p.detach().clone() for p in mirror.tabular.parameters()]
    with torch.no_grad():
        for p in model.tabular.parameters():
            p.add_(1.0)  # the online encoder moves
    images = torch.randn(4, 1, *model.config.image.shape)
    losses = step(images, make_batch(b=4), None, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in mirror.parameters())
    for old, new, online in zip(
        before, mirror.tabular.parameters(), model.tabular.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online.detach())
    assert int(mirror.pointer) == 4  # the batch's keys entered the queue


def test_the_queue_wraps_around():
    model = _model(queue_size=6)
    mirror = objectives.PretrainingObjective(model).momentum
    keys = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    mirror.enqueue(keys, keys)
    mirror.enqueue(keys * -1, keys * -1)
    assert int(mirror.pointer) == 2
    torch.testing.assert_close(mirror.image_queue[:2], -keys[2:])
    torch.testing.assert_close(mirror.image_queue[2:4], keys[2:])


def test_reconstruction_through_the_cls_against_a_hand_computation():
    model = _model(mtr_weight=1.0, mtr_source="cls")
    batch = make_batch(b=3)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 0] = mask[2, 3] = True  # two numeric cells
    torch.manual_seed(0)
    real = objectives.choose_cells
    objectives.choose_cells = lambda observed, fraction, generator=None: mask
    try:
        loss = objectives._reconstruction(model, batch, 0.15, "cls", None)
    finally:
        objectives.choose_cells = real
    encoded = model.encode_tabular(batch.with_missing(mask))
    expected = []
    for row, column in ((0, 0), (2, 3)):
        meaning = model.tabular.tokenizer.adapter(batch.column_vectors[row, column])
        hidden = model.cell_decoder(torch.cat([encoded.cls[row], meaning]))
        value = model.numeric_head(hidden)[0]
        expected.append((value - batch.values[row, column]) ** 2)
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_retrieval_recall_on_a_toy_with_a_known_answer():
    features = torch.eye(6)
    assert retrieval_recall(features, features) == {"val_recall_at_1": 1.0, "val_recall_at_5": 1.0}
    # six subjects on a circle, 20 degrees apart; subjects 0 and 1 have each other's table, so
    # their own comes second: recall@1 is 4/6, recall@5 is 1, in both directions
    angles = torch.arange(6) * torch.pi / 9
    image = torch.stack([angles.cos(), angles.sin()], 1)
    table = image[[1, 0, 2, 3, 4, 5]]
    recall = retrieval_recall(image, table)
    assert recall["val_recall_at_1"] == pytest.approx(4 / 6)
    assert recall["val_recall_at_5"] == pytest.approx(1.0)


def test_retrieval_within_cohorts_ignores_the_other_cohort():
    # cohort 1 (rows 3-5) copies cohort 0's directions, its tables exactly on its images; cohort
    # 0's tables are off by 0.2, so across cohorts they lie nearer cohort 1's images
    image = torch.tensor([[1, 0], [0, 1], [-1, 0], [1, 0.05], [0.05, 1], [-1, 0.05]])
    table = torch.tensor([[1, 0.2], [0.2, 1], [-1, 0.2], [1, 0.05], [0.05, 1], [-1, 0.05]])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    assert retrieval_recall(image, table)["val_recall_at_1"] == pytest.approx(0.5)
    within = retrieval_recall(image, table, groups)
    assert within == {"val_recall_at_1": 1.0, "val_recall_at_5": 1.0}


def test_recall_chance_is_k_over_each_cohorts_size():
    groups = torch.tensor([0] * 3 + [1] * 10)
    chance = recall_chance(groups)
    assert chance["val_recall_at_5_chance"] == pytest.approx((3 + 5) / 13)  # 3 of 3, 5 of 10
    assert chance["val_recall_at_1_chance"] == pytest.approx(2 / 13)


def test_the_console_line_puts_recall_next_to_its_chance():
    from citab_cli.core.training.validation import describe

    scores = {"epoch": 1, "val_loss": 1.0, "val_recall_at_5": 0.9}
    assert describe({**scores, "val_recall_at_5_chance": 0.1}).endswith("R@5 0.900 (chance 0.100)")
    assert "too few validation subjects" in describe({**scores, "val_recall_at_5_chance": 0.8})


def test_itc_within_cohorts_is_the_loss_of_each_cohort_alone():
    g = torch.Generator().manual_seed(3)
    image, table = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    groups = torch.tensor([0, 1, 0, 2, 1, 0, 1])
    loss, logits = itc_loss(image, table, 0.1, groups=groups)
    image_n = torch.nn.functional.normalize(image, dim=-1)
    table_n = torch.nn.functional.normalize(table, dim=-1)
    rows = []
    for i in range(7):
        mates = (groups == groups[i]).nonzero().squeeze(1).tolist()
        target = torch.tensor(mates.index(i))
        for a, b in ((image_n, table_n), (table_n, image_n)):
            row = a[i] @ b[mates].T / 0.1
            rows.append(torch.nn.functional.cross_entropy(row[None], target[None]))
    torch.testing.assert_close(loss, torch.stack(rows).mean())
    # a row with no cohort mate (cohort 2) has only its positive: it adds nothing to the loss
    assert logits[3].argmax() == 3 and (logits[3, [0, 1, 2, 4, 5, 6]] < -1000).all()


def test_itc_within_cohorts_refuses_a_queue_and_is_used_in_training():
    with pytest.raises(ValueError, match="queue_size needs loss.itc_same_cohort: false"):
        LossConfig(itc_same_cohort=True, queue_size=8)
    model = _model(itc_same_cohort=True, itm_weight=0.0, mtr_weight=0.0)
    batch = make_batch(b=4)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 1, *model.config.image.shape, generator=g)
    same = objectives.pretraining_loss(model, images, batch, torch.tensor([0, 0, 0, 0]))
    apart = objectives.pretraining_loss(model, images, batch, torch.tensor([0, 0, 1, 1]))
    assert float(apart["itc"]) < float(same["itc"])  # fewer candidates, an easier loss


@pytest.mark.parametrize("init", ["spread", "identity"])
def test_how_a_value_enters_its_token(init: str):
    """ "identity" only scales the column's meaning: after LayerNorm two values of one sign are
    the same token; "spread" turns it, so LayerNorm keeps the difference."""
    from citab_cli.core.layers.tabular_tokenizer import TabularTokenizer

    torch.manual_seed(0)
    tokenizer = TabularTokenizer(header_dim=E, dim=16, value_init=init)
    batch = make_batch(b=2, c=3)
    tokens = []
    for z in (0.2, 0.9):
        cell = batch.__class__(**{**batch.__dict__, "values": torch.full((2, 3), z),
                                  "categorical": torch.zeros(2, 3, dtype=torch.bool),
                                  "missing": torch.zeros(2, 3, dtype=torch.bool)})  # fmt: skip
        tokens.append(torch.nn.functional.layer_norm(tokenizer.cell_tokens(cell)[0, 0], (16,)))
    gap = (tokens[0] - tokens[1]).abs().max()
    assert (gap < 0.01) if init == "identity" else (gap > 0.1)


def test_best_checkpoint_monitors():
    from citab_cli.core.training.validation import better

    best = {"val_loss": 1.0, "val_recall_at_5": 0.4, "val_probe_bacc": 0.6}
    lower_loss = {"val_loss": 0.9, "val_recall_at_5": 0.3, "val_probe_bacc": 0.5}
    assert better(lower_loss, best, "ssl_loss")
    assert not better(lower_loss, best, "retrieval")
    assert not better(lower_loss, best, "probe")
    more_recall = {"val_loss": 1.1, "val_recall_at_5": 0.5, "val_probe_bacc": 0.5}
    assert better(more_recall, best, "retrieval") and not better(more_recall, best, "ssl_loss")
    no_labels = {"val_loss": 0.8, "val_recall_at_5": 0.1}  # no probe: falls back to the loss
    assert better(no_labels, {"val_loss": 1.0, "val_recall_at_5": 0.2}, "probe")
    assert better({"val_loss": 2.0}, {}, "retrieval")  # the first validation is the best so far


def test_the_console_line_puts_matching_next_to_its_chance():
    """Matching AUC and its balanced accuracy (true pairs and negatives weighed alike) are both
    at 0.5 by chance; the line says so, and says nothing of matching when ITM is off."""
    from citab_cli.core.training.validation import describe

    scores = {"epoch": 2, "val_loss": 1.0, "val_itm_auc": 0.4987, "val_itm_accuracy": 0.5}
    assert describe(scores).endswith("matching AUC 0.499 and balanced accuracy 0.500 (chance 0.5)")
    assert describe({**scores, "val_itm_auc": 0.61}).count("chance 0.5") == 1
    assert "matching" not in describe({"epoch": 2, "val_loss": 1.0})
