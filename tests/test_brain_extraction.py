"""Brain extraction: citab's forward pass of deepbet's networks against deepbet's own TorchScript
modules and its `BrainExtraction`, bit for bit (at reduced shapes, so the test is quick; the
benchmark benchmarks/brain_extraction.py compares whole 256³ runs on synthetic heads)."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from citab_cli.core.scans.brain_extraction import BrainExtractor, _nearest_exact
from tests.helpers import raw_subject

SHAPES = ((64, 64, 64), (96, 96, 96))


@pytest.fixture(scope="module")
def networks():
    """deepbet's own extractor and citab's, on one PyTorch thread (as ingest runs them)."""
    from deepbet import BrainExtraction

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # deepbet's TorchScript loading warns about torch's future
        warnings.simplefilter("ignore")
        theirs = BrainExtraction(no_gpu=True)
    yield theirs, BrainExtractor(shapes=SHAPES)
    torch.set_num_threads(threads)


def test_the_network_gives_deepbets_probabilities_bit_for_bit(networks):
    theirs, ours = networks
    x = torch.rand(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs.model(x)[0, 1].numpy()
        features = ours.net.features(x)
        whole = tuple(np.arange(64) for _ in range(3))
        assert np.array_equal(ours.net.brain_probability(features, whole), expected)


def test_reading_some_voxels_gives_what_the_whole_output_holds_there(networks):
    """The last layer computed at the voxels a nearest-exact resampling reads, against the whole
    output read at the same voxels: each voxel's kernel tap and feature voxel are the right ones."""
    _, ours = networks
    x = torch.rand(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = ours.net.features(x)
        whole = ours.net.brain_probability(features, tuple(np.arange(64) for _ in range(3)))
        index = tuple(_nearest_exact(64, n, "cpu") for n in (23, 40, 31))
        some = ours.net.brain_probability(features, index)
    assert some.shape == (23, 40, 31)
    np.testing.assert_allclose(some, whole[np.ix_(*index)], atol=1e-6)
    assert np.array_equal(index[0], np.floor((np.arange(23) + 0.5) * 64 / 23).astype(int))


def test_the_mask_is_deepbets_on_a_whole_head(networks, tmp_path: Path):
    """A whole head in a storage orientation of its own: the same mask as deepbet's
    `BrainExtraction` (its steps at the same reduced shapes), voxel for voxel."""
    theirs, ours = networks
    path, _ = raw_subject(tmp_path, 3, size=64)
    image = nib.as_closest_canonical(nib.load(path))
    volume = image.get_fdata(dtype=np.float32)
    with torch.no_grad():
        probability = theirs.run_model(volume.copy(), small_shape=SHAPES[0], shape=SHAPES[1])
    expected = theirs.postprocess(probability > 0.5)
    mask = ours.mask(volume)
    assert mask.dtype == bool and mask.shape == volume.shape
    assert mask.sum() > 0.05 * mask.size
    assert np.array_equal(mask, expected)


def test_a_volume_without_foreground_is_refused(networks):
    _, ours = networks
    with pytest.raises(ValueError, match="no brain|bounding box"):
        ours.mask(np.zeros((40, 40, 40), np.float32))


@pytest.mark.gpu
def test_on_a_gpu_the_mask_is_the_cpus_but_at_the_edge(networks, tmp_path: Path):
    """The same forward pass on CUDA (cuDNN's convolutions sum in their own order): the mask
    agrees with the CPU's but for a few voxels at the brain's edge."""
    _, ours = networks
    path, _ = raw_subject(tmp_path, 3, size=64)
    volume = nib.as_closest_canonical(nib.load(path)).get_fdata(dtype=np.float32)
    on_gpu = BrainExtractor("cuda", shapes=SHAPES).mask(volume)
    on_cpu = ours.mask(volume)
    dice = 2 * (on_gpu & on_cpu).sum() / (on_gpu.sum() + on_cpu.sum())
    assert dice > 0.99
