"""DAFT-style supervised fusion, the fine-tuning baseline trained from scratch: its table
vector by hand, an affine transform that starts as the identity, and a table that reaches the
scan's features."""

from __future__ import annotations

import torch

from citab_cli.core.evaluation.fusion import DaftClassifier, table_vector
from citab_cli.core.model.config import preset
from tests.helpers import make_batch


def test_the_table_vector_by_hand():
    batch = make_batch(b=3, c=4, levels=3)
    vector = table_vector(batch, 3).reshape(3, 4, 5)  # per slot: value, missing, 3 levels
    for i in range(3):
        for j in range(4):
            value, missing, one_hot = vector[i, j, 0], vector[i, j, 1], vector[i, j, 2:]
            numeric = not batch.categorical[i, j] and not batch.missing[i, j]
            expected = batch.values[i, j] if numeric and batch.present[i, j] else 0.0
            assert value == expected
            assert missing == float(batch.missing[i, j] and batch.present[i, j])
            if batch.categorical[i, j] and batch.present[i, j]:
                assert one_hot.tolist() == [float(k == batch.level_index[i, j]) for k in range(3)]
            else:
                assert one_hot.sum() == 0
    assert table_vector(batch, 3).shape == (3, 20)


def _daft(columns=4, levels=3):
    torch.manual_seed(0)
    return DaftClassifier(preset("tiny").image, columns, levels, classes=3).eval()


def test_the_transform_starts_as_the_identity():
    model = _daft()
    images = torch.randn(
        2, 1, *preset("tiny").image.shape, generator=torch.Generator().manual_seed(1)
    )
    vector = table_vector(make_batch(b=2, c=4), 3)
    plain = model.backbone.image(images).mean((2, 3, 4))
    torch.testing.assert_close(model.backbone(images, vector), plain)


def test_the_table_conditions_the_scan_features_and_reaches_the_head():
    model = _daft()
    torch.nn.init.normal_(model.backbone.condition[-1].weight, std=0.5)
    images = torch.randn(
        2, 1, *preset("tiny").image.shape, generator=torch.Generator().manual_seed(1)
    )
    batch = make_batch(b=2, c=4, seed=0)
    other = make_batch(b=2, c=4, seed=5)  # other values, same scans
    features = model.backbone(images, table_vector(batch, 3))
    assert not torch.allclose(features, model.backbone(images, table_vector(other, 3)))
    logits = model(images, batch)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    model.train()
    model(images, batch).sum().backward()
    assert model.backbone.condition[0].weight.grad.abs().sum() > 0
    assert model.backbone.image.stem[0].weight.grad.abs().sum() > 0
