"""What pretraining logs beyond its losses: gradient norms per part, effective ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from citab_cli.core.training.diagnostics import effective_rank, gradient_norms


def test_effective_rank_of_known_spectra():
    assert effective_rank(torch.eye(6) * 3) == pytest.approx(5.0, rel=1e-4)  # centred: 5 dirs
    line = torch.arange(10.0)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-4)
    # two directions, one three times as spread: exp(entropy of (3/4, 1/4)) = 1.755
    x = torch.tensor([[3.0, 0], [-3.0, 0], [0, 1.0], [0, -1.0]])
    assert effective_rank(x) == pytest.approx(1.7548, rel=1e-3)
    assert effective_rank(torch.ones(5, 4)) == 1.0 and effective_rank(torch.ones(1, 4)) != 1.0


def test_gradient_norms_per_part_by_hand():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.image = torch.nn.Linear(2, 1, bias=False)
            self.tabular = torch.nn.Linear(2, 1, bias=False)
            self.matching_head = torch.nn.Linear(2, 1, bias=False)
            self.image_position = torch.nn.Parameter(torch.zeros(2))

    net = Net()
    net.image.weight.grad = torch.tensor([[3.0, 4.0]])
    net.tabular.weight.grad = torch.tensor([[0.0, 2.0]])
    net.image_position.grad = torch.tensor([1.0, 0.0])  # fusion's positional embedding
    norms = gradient_norms(net)  # the matching head has no gradient
    assert norms == {"grad_image": 5.0, "grad_tabular": 2.0, "grad_fusion": 1.0,
                     "grad_projections": 0.0, "grad_heads": 0.0}  # fmt: skip


def test_a_run_logs_gradient_norms_and_embedding_ranks(pretrained: Path):
    lines = [
        json.loads(x) for x in (pretrained / "runs/base/metrics.jsonl").read_text().split("\n") if x
    ]
    steps = [r for r in lines if "step" in r and "loss" in r]
    assert steps and all(r["grad_image"] > 0 and r["grad_tabular"] > 0 for r in steps)
    (validation,) = [r["validation"] for r in lines if "validation" in r][-1:]
    assert validation["val_rank_image"] >= 1.0 and validation["val_rank_tabular"] >= 1.0
