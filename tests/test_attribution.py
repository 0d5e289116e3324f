"""The attribution methods (captum underneath), pinned against hand-written references on tiny
models, and truth tests with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from citab_cli.core.explain.attribution import (
    expected_gradients,
    grad_cam,
    integrated_gradients,
    occlusion,
    routing_entropy,
    sample_baselines,
)


def _reference_ig(f, inputs, baseline, steps):
    """Integrated gradients by hand: the midpoint Riemann sum along the straight path."""
    delta = inputs - baseline
    total = torch.zeros_like(inputs)
    for k in range(steps):
        point = (baseline + (k + 0.5) / steps * delta).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(point).sum(), point)
        total += grad
    return (delta * total / steps).sum(-1)


def _scalar_net():
    """A tiny network (B, 4, 3) -> (B,) scores."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    return lambda x: net(x)[:, 0]


def test_integrated_gradients_equal_the_hand_written_sum_and_are_complete():
    f = _scalar_net()
    x, base = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    ours = integrated_gradients(f, x, base, steps=32)
    torch.testing.assert_close(ours, _reference_ig(f, x, base, 32), atol=1e-5, rtol=1e-4)
    fine = integrated_gradients(f, x, steps=256)
    expected = (f(x) - f(torch.zeros_like(x))).detach()
    torch.testing.assert_close(fine.sum(1), expected, atol=1e-3, rtol=1e-3)


def test_a_planted_dependence_ranks_first():
    w = torch.randn(5)

    def f(x):  # depends on column 2 only
        return torch.tanh(x[:, 2] @ w)

    x = torch.randn(4, 6, 5)
    strength = integrated_gradients(f, x, steps=64).abs().mean(0)
    assert int(strength.argmax()) == 2 and strength[[0, 1, 3, 4, 5]].abs().max() == 0


def test_expected_gradients_are_complete_against_the_mean_over_baselines():
    f = _scalar_net()
    x, baselines = torch.randn(2, 4, 3), torch.randn(6, 4, 3)
    values = expected_gradients(f, x, baselines, steps=128)
    expected = f(x) - f(baselines).mean()
    torch.testing.assert_close(values.sum(1), expected.detach(), atol=1e-3, rtol=1e-3)
    by_hand = torch.stack([_reference_ig(f, x, b[None].expand_as(x), 128) for b in baselines])
    torch.testing.assert_close(values, by_hand.mean(0), atol=1e-5, rtol=1e-4)


def test_a_binary_non_driver_does_not_outrank_the_driver():
    """The hard case of a column the model reads but the diagnosis does not depend on: a binary
    column (two levels, tokens a and b) whose output is the same at both levels, but which
    passes through a region between them that no subject occupies (here a bump at the
    midpoint). From the mean token, the point between the levels, integrated gradients credit
    it with the bump's whole height for every subject, more than the real driver; from real
    subjects' cells (expected gradients) its attribution is ~0 and the driver ranks first."""
    d = 4
    a, b = torch.zeros(d), torch.zeros(d)
    a[0], b[0] = -1.0, 1.0
    w = torch.tensor([0.0, 1.0, 0.0, 0.0])

    def f(x):  # column 0 is the binary non-driver, column 1 the driver
        bump = 3.0 * torch.exp(-((x[:, 0] - (a + b) / 2) ** 2).sum(-1) / 0.1)
        return torch.tanh(x[:, 1] @ w) + bump

    rng = np.random.default_rng(0)
    n = 40
    levels = torch.stack([a if rng.random() < 0.5 else b for _ in range(n)])
    driver = torch.zeros(n, d)
    driver[:, 1] = torch.tensor(rng.normal(0, 1, n), dtype=torch.float32)
    x = torch.stack([levels, driver], 1)  # (N, 2, D)
    observed = torch.ones(n, 2, dtype=torch.bool)
    mean_start = x.mean(0, keepdim=True).expand_as(x)
    from_mean = integrated_gradients(f, x, mean_start, steps=64).abs().mean(0)
    assert from_mean[0] > from_mean[1]  # the failure: the non-driver ranks first
    baselines = sample_baselines(x, observed, 32, seed=0)
    from_sample = expected_gradients(f, x, baselines, steps=64).abs().mean(0)
    assert from_sample[1] > 10 * from_sample[0], from_sample


class _TinyScanModel(torch.nn.Module):
    """Conv -> ReLU -> global mean -> linear: two classes from a 3D scan."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(sign * self.head.weight.abs())

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3, 4)))


def _reference_grad_cam(model, images, target):
    """Grad-CAM by hand: channel weights = mean gradient, ReLU of the weighted sum, upsampled."""
    feats = model.conv(images)
    feats.retain_grad()
    score = model.head(feats.mean((2, 3, 4))).gather(1, target[:, None]).sum()
    score.backward()
    weights = feats.grad.mean((2, 3, 4), keepdim=True)
    cam = F.relu((weights * feats).sum(1, keepdim=True))
    return cam[:, 0].detach()


def test_grad_cam_equals_the_hand_written_map():
    model = _TinyScanModel()
    images = torch.rand(2, 1, 8, 8, 8)
    target = torch.tensor([0, 1])
    mask = torch.ones(2, 8, 8, 8, dtype=torch.bool)
    ours = grad_cam(model, model.conv, images, target, mask, 0)
    expected = _reference_grad_cam(model, images, target)
    expected = expected / expected.flatten(1).amax(1)[:, None, None, None]
    torch.testing.assert_close(ours.maps, expected, atol=1e-5, rtol=1e-4)
    assert ours.notes == ["", ""]


def test_a_grad_cam_with_no_positive_evidence_says_so_and_shows_something():
    model = _TinyScanModel(sign=-1.0)  # every (non-negative) channel lowers both scores
    images = torch.rand(1, 1, 8, 8, 8)
    mask = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    mask[:, 2:6, 2:6, 2:6] = True
    out = grad_cam(model, model.conv, images, torch.tensor([0]), mask, 0)
    assert "no positive evidence" in out.notes[0] and "gradient x activation" in out.notes[0]
    assert out.maps[0].max() == pytest.approx(1.0) and out.maps[0][~mask[0]].max() == 0


def test_occlusion_finds_the_region_the_score_reads():
    class Region(torch.nn.Module):
        def forward(self, x):  # class 1 reads the mean of one corner cube only
            corner = x[:, :, :4, :4, :4].mean((1, 2, 3, 4))
            return torch.stack([torch.zeros_like(corner), corner], 1)

    images = torch.rand(1, 1, 12, 12, 12) + 1.0
    mask = torch.ones(1, 12, 12, 12, dtype=torch.bool)
    out = occlusion(Region(), images, torch.tensor([1]), mask, patch=4)
    m = out.maps[0]
    peak = np.unravel_index(int(m.argmax()), m.shape)
    assert max(peak) < 4  # inside the cube the score reads
    assert m[:6, :6, :6].sum() > 0.99 * m.sum()  # the cube and the patches that overlap it
    assert m[8:, :, :].max() == 0 and out.notes == [""]


def test_routing_entropy_tells_one_prototype_from_an_even_spread():
    k = 4
    one = np.zeros((6, 1, k))
    one[:, 0, 2] = 1.0  # every column of "a" routes to prototype 3
    even = np.zeros((4, 1, k))
    even[np.arange(4), 0, np.arange(4)] = 1.0  # "b": one column per prototype
    out = routing_entropy(np.concatenate([one, even]), ["a"] * 6 + ["b"] * 4)
    assert out["a"]["layers"][0] == {"entropy": 0.0, "prototype": 3, "share": 1.0}
    assert out["b"]["layers"][0]["entropy"] == pytest.approx(1.0)


def test_routing_in_words_tells_a_cohort_deciding_from_a_collapse():
    from citab_cli.core.explain.markdown import routing_lines

    k = 3
    a, b = np.zeros((4, 1, k)), np.zeros((4, 1, k))
    a[:, 0, 0], b[:, 0, 1] = 1.0, 1.0  # each cohort its own prototype
    entropy = routing_entropy(np.concatenate([a, b]), ["a"] * 4 + ["b"] * 4)
    entropy["b"]["seen"] = False
    text = "\n".join(routing_lines(entropy))
    assert "all of a's columns route to prototype 1: the cohort" in text
    assert "b (4 columns, not seen in pretraining)" in text and "collapsed" not in text
    b[:, 0, 0], b[:, 0, 1] = 1.0, 0.0  # now both use prototype 1
    text = "\n".join(routing_lines(routing_entropy(np.concatenate([a, b]), ["a"] * 4 + ["b"] * 4)))
    assert "every cohort's columns route to prototype 1; the routing has collapsed" in text
    assert "entropy -0.00" not in text


def test_large_grids_are_attributed_a_few_subjects_a_pass():
    """Memory grows with the subjects in a pass (paper preset at 128^3: 6.0 GiB for 4, 11.3 GiB
    for 8, benchmarks/explain_memory.py): 128^3 takes 4, the paper's grid 1, the demo's 8."""
    from citab_cli.core.explain.explanation import subjects_per_pass

    assert subjects_per_pass((48, 48, 48)) == 8
    assert subjects_per_pass((128, 128, 128)) == 4
    assert subjects_per_pass((160, 208, 176)) == 1
