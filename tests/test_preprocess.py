"""Preprocessing onto the project grid."""

from __future__ import annotations

import numpy as np
import pytest

from citab_cli.core.errors import CitabError
from citab_cli.core.scans.preprocess import Volume, load_volume, to_grid
from citab_cli.core.settings import ImageSettings, default_spacing
from tests.helpers import write_nifti


def phantom() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 0.05, (30, 34, 26)).astype(np.float32)
    data[6:24, 8:28, 5:21] += 1.0
    data[10:14, 12:16, 9:13] += 2.0  # an asymmetric landmark
    return data


def test_output_grid_and_foreground_zscore():
    settings = ImageSettings(shape=(24, 20, 28), spacing=(2.0, 2.0, 2.0))
    out = to_grid(Volume(phantom(), np.diag([2.0, 2.0, 2.0, 1.0])), settings).astype(np.float32)
    assert out.shape == (24, 20, 28) and np.isfinite(out).all()
    inside = out > out.mean()
    assert abs(out[inside].mean()) < 0.6


def test_orientation_does_not_change_the_result():
    data = phantom()
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    las = ras.copy()
    las[0, 0] = -2.0
    las[0, 3] = 2.0 * (data.shape[0] - 1)  # same world positions, x stored reversed
    settings = ImageSettings(shape=(24, 24, 24), spacing=(2.0, 2.0, 2.0))
    a = to_grid(Volume(data, ras), settings)
    b = to_grid(Volume(np.ascontiguousarray(data[::-1]), las), settings)
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-2)


def test_single_volume_4d_is_accepted(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", phantom()[..., None])
    assert load_volume(path).data.shape == (30, 34, 26)


def test_default_spacing_spreads_the_field_of_view():
    assert default_spacing((128, 128, 128)) == (1.5, 1.5, 1.5)
    assert default_spacing((48, 48, 48)) == (4.0, 4.0, 4.0)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        ImageSettings(shape=(4, 4, 4))
    with pytest.raises(ValueError):
        ImageSettings(clip_percentiles=(99, 1))


def test_corrupt_file_message_names_it(tmp_path):
    path = tmp_path / "broken.nii"
    path.write_bytes(b"\x5c\x01\x00\x00" + b"garbage" * 10)
    with pytest.raises(CitabError, match="broken.nii: cannot read"):
        load_volume(path)
