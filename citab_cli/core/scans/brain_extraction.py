"""Brain extraction with deepbet's two networks and the weights its wheel ships, run here.

deepbet (Fisch et al. 2024) finds the brain in two passes: a network at 128³ over the whole scan
finds the brain's bounding box, and a second one at 256³ over that box, grown by 10% on each side,
segments it. citab runs the same networks and the same steps, with the same arithmetic but for
the order of one sum in the last layer, in three ways that cost less on a CPU and give the same
mask:

- the max-pooling of the first stage runs through oneDNN (a maximum is exact whatever computes it);
- the last layer, a 2×2×2 transposed convolution to twice the resolution, and its softmax are
  computed only at the voxels the mask is read from (deepbet resamples the 256³ output back to
  the scan's voxels in the box by nearest neighbour: about one output voxel in three is read on
  a 1 mm scan, one in sixteen at 2 mm);
- the intensity window (the 0.5 and 99.5 percentiles) is found in one sort instead of two, and
  the image is normalised in place.

`tests/test_brain_extraction.py` checks the network against deepbet's own TorchScript module and
the mask against deepbet's own steps; benchmarks/brain_extraction.py times both on whole heads
and counts the voxels where the masks differ (docs/performance.md).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

#: deepbet's shapes: the scan for the bounding box, the box for the segmentation.
SMALL_SHAPE, SHAPE = (128, 128, 128), (256, 256, 256)
#: How much the bounding box grows on each side, as a fraction of its size.
BOX_MARGIN = 0.1
#: A slice whose mean foreground is above this counts toward the bounding box.
BOX_THRESHOLD = 0.02
#: The intensity window of the normalisation (quantiles of the 128³ scan).
WINDOW = (0.005, 0.995)


class LinkNet:
    """deepbet's 3D LinkNet, its forward pass written out over the weights of its TorchScript
    module (a 7³ stem, four residual stages, four decoder stages with skip sums, and a head that
    doubles the resolution twice)."""

    def __init__(self, scripted):
        self.weights = {name: p.detach() for name, p in scripted.named_parameters()}

    def _conv(self, x, name: str, stride: int = 1, padding: int = 0):
        import torch.nn.functional as F

        bias = self.weights.get(f"{name}.bias")
        return F.conv3d(x, self.weights[f"{name}.weight"], bias, stride, padding)

    def _up(self, x, name: str, stride: int, padding: int, output_padding: int):
        import torch.nn.functional as F

        weight, bias = self.weights[f"{name}.weight"], self.weights.get(f"{name}.bias")
        return F.conv_transpose3d(x, weight, bias, stride, padding, output_padding)

    def _block(self, x, name: str, stride: int):
        import torch

        y = _relu_norm(self._conv(x, f"{name}.double_conv.0", stride, 1))
        y = _norm(self._conv(y, f"{name}.double_conv.3", 1, 1))
        skip = x
        if f"{name}.downsample.0.weight" in self.weights:
            skip = _norm(self._conv(x, f"{name}.downsample.0", stride))
        return torch.relu_(y.add_(skip))

    def _decoder(self, x, name: str, stride: int):
        x = _relu_norm(self._conv(x, f"{name}.conv1.0"))
        x = _relu_norm(self._up(x, f"{name}.tp_conv.0", stride, 1, stride - 1))
        return _relu_norm(self._conv(x, f"{name}.conv2.0"))

    def features(self, x):
        """The 8 channels at half the output's resolution that the last layer reads."""
        stem = _max_pool(_relu_norm(self._conv(x, "init.0", 2, 3)))
        skips = [stem]
        for stage, stride in (("down0", 1), ("down1", 2), ("down2", 2), ("down3", 2)):
            skips.append(self._block(self._block(skips[-1], f"{stage}.block1", stride),
                                     f"{stage}.block2", 1))  # fmt: skip
        y = skips.pop()
        for stage in ("up0", "up1", "up2", "up3"):
            y = self._decoder(y, stage, 1 if stage == "up3" else 2).add(skips.pop())
        y = _relu_norm(self._up(y, "tp_conv1.0", 2, 1, 1))
        return _relu_norm(self._conv(y, "conv.0", 1, 1))

    def brain_probability(self, features, index: tuple):
        """The brain class's softmax probability at the output voxels `index` (three arrays of
        output indices, one an axis, forming a grid). The last layer is a 2×2×2 transposed
        convolution of stride 2, so output voxel i reads feature voxel i // 2 through kernel tap
        i % 2 and nothing else: where only some output voxels are read, only those are
        computed."""
        import torch
        import torch.nn.functional as F

        weight, bias = self.weights["tp_conv2.weight"], self.weights["tp_conv2.bias"]
        whole = all(np.array_equal(i, np.arange(2 * n))
                    for i, n in zip(index, features.shape[2:], strict=True))  # fmt: skip
        if whole:
            logits = F.conv_transpose3d(features, weight, bias, 2)[0]
            return torch.softmax(logits, 0)[1].cpu().numpy()
        # Each axis's voxels ordered even taps first, so the grid falls into eight blocks of
        # one kernel tap each; the order is undone at the end.
        order = [np.argsort(i % 2, kind="stable") for i in index]
        evens = [int((i % 2 == 0).sum()) for i in index]
        cells = [torch.as_tensor(i[o] // 2, device=features.device)
                 for i, o in zip(index, order, strict=True)]  # fmt: skip
        source = features[0][:, cells[0][:, None, None], cells[1][None, :, None],
                             cells[2][None, None, :]]  # fmt: skip
        logits = torch.empty((2, *source.shape[1:]), dtype=source.dtype, device=source.device)
        for taps in itertools.product((0, 1), repeat=3):
            block = (slice(None),) + tuple(slice(n, None) if t else slice(0, n)
                                           for t, n in zip(taps, evens, strict=True))  # fmt: skip
            logits[block] = torch.einsum("cxyz,co->oxyz", source[block], weight[(...,) + taps])
        logits.add_(bias[:, None, None, None])
        brain = torch.softmax(logits, 0)[1].cpu().numpy()
        return brain[np.ix_(*(np.argsort(o) for o in order))]


def _norm(x):
    import torch.nn.functional as F

    return F.instance_norm(x, eps=1e-5)


def _relu_norm(x):
    import torch

    return torch.relu_(_norm(x))


def _max_pool(x):
    """3³ max-pooling of stride 2: oneDNN's on the CPU, the same maxima."""
    import torch

    if x.device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.max_pool3d(x.to_mkldnn(), 3, 2, 1).to_dense()
    return torch.max_pool3d(x, 3, 2, 1)


def _nearest_exact(size: int, out: int, device) -> np.ndarray:
    """The input index PyTorch's nearest-exact resampling reads for each of `out` outputs from
    `size` inputs (found by resampling the indices themselves, so the rule is PyTorch's own)."""
    import torch
    import torch.nn.functional as F

    ramp = torch.arange(size, dtype=torch.float32, device=device)[None, None, :, None, None]
    picked = F.interpolate(ramp, (out, 1, 1), mode="nearest-exact")
    return picked[0, 0, :, 0, 0].round().long().cpu().numpy()


class BrainExtractor:
    """deepbet's brain extraction of a RAS array (its `threshold` 0.5, no dilation); `shapes`
    are the two networks' input shapes, deepbet's unless a test asks for smaller ones."""

    def __init__(self, device: str = "cpu", shapes: tuple = (SMALL_SHAPE, SHAPE)):
        import warnings

        import torch
        from deepbet.utils import DATA_PATH

        self.device, (self.small_shape, self.shape) = torch.device(device), shapes
        with warnings.catch_warnings():  # TorchScript loading warns about torch's own future
            warnings.simplefilter("ignore")
            self.box_net, self.net = (
                LinkNet(torch.jit.load(f"{DATA_PATH}/models/{n}.pt", map_location=self.device))
                for n in ("bbox_model", "model")
            )

    def mask(self, volume: np.ndarray) -> np.ndarray:
        """The brain mask (bool) of a 3D array in RAS voxel order."""
        import fill_voids
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(volume, np.float32)).to(self.device)
            x = torch.nan_to_num(x)
            small = _resampled(x, self.small_shape)
            low, high = torch.quantile(small, torch.tensor(WINDOW, device=self.device))
            found = self._probability(self.box_net, _normalised(small, low, high), small.shape)
            box = _bounding_box(_largest_component(found > 0.5), x.shape)
            inside = _normalised(_resampled(x[box], self.shape), low, high)
            crop = tuple(s.stop - s.start for s in box)
            brain = self._probability(self.net, inside, crop) > 0.5
        mask = np.zeros(tuple(x.shape), bool)
        mask[box] = fill_voids.fill(_largest_component(brain))
        return mask

    def _probability(self, net: LinkNet, x, out: tuple) -> np.ndarray:
        """The brain probability of `net` on `x`, read back onto an `out`-shaped grid the way
        deepbet resamples its output (nearest-exact)."""
        features = net.features(x[None, None])
        index = tuple(_nearest_exact(2 * n, m, self.device)
                      for n, m in zip(features.shape[2:], out, strict=True))  # fmt: skip
        return net.brain_probability(features, index)


def _resampled(x, shape: tuple):
    import torch.nn.functional as F

    return F.interpolate(x[None, None], shape, mode="nearest-exact")[0, 0]


def _normalised(x, low, high):
    """deepbet's normalisation, in place: window to [0, 1], z-score, then ImageNet's grey
    mean and spread (0.449, 0.226)."""
    x = x.sub_(low).div_(high - low).clamp_(min=0, max=1)
    mean, std = x.mean(), x.std()
    return x.sub_(mean).div_(std).mul_(0.226).add_(0.449)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """`mask` with only its largest connected component (26-connected, as deepbet's)."""
    import cc3d

    labels = cc3d.connected_components(mask)
    if not labels.any():
        raise ValueError("no foreground: the networks found no brain")
    largest = np.bincount(labels[labels != 0]).argmax()
    return labels == largest


def _bounding_box(found: np.ndarray, shape) -> tuple[slice, ...]:
    """deepbet's box: the slices of the 128³ mask whose mean is above BOX_THRESHOLD, scaled to
    the scan and grown by BOX_MARGIN on each side (in float32, as deepbet computes it)."""
    import torch

    small = torch.from_numpy(found.astype(np.float32))
    ranges = [torch.where(small.mean(dims) > BOX_THRESHOLD)[0] for dims in ((1, 2), (0, 2), (0, 1))]
    if any(r.numel() == 0 for r in ranges):
        raise ValueError("not enough foreground to calculate a bounding box")
    centre = torch.tensor([(r.max() + 1 + r.min()) / 2 for r in ranges])
    size = torch.tensor([(r.max() + 1) - r.min() for r in ranges])
    scale = torch.tensor(tuple(shape)) / torch.tensor(small.shape)
    centre = (scale * centre).round()
    size = ((1 + 2 * BOX_MARGIN * torch.ones(3)) * (scale * size)).round()
    return tuple(slice(max(0, int(c - s / 2)), min(n, int(c + s / 2)))
                 for c, s, n in zip(centre, size, shape, strict=True))  # fmt: skip


@lru_cache(maxsize=2)
def extractor(device: str = "cpu") -> BrainExtractor:
    """The networks, loaded once per process and device."""
    return BrainExtractor(device)
