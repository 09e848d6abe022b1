"""The PNG overview: slice choice and a readable image."""
from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from UADContrastiveLib.outputs.overview import choose_slices, write_overview_png


def phantom(shape=(40, 48, 48)):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    brain = ((z - 20) / 16.0) ** 2 + ((y - 24) / 20.0) ** 2 + ((x - 24) / 16.0) ** 2 < 1
    image = np.where(brain, 0.5 + 0.2 * np.sin(x / 3.0), 0).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[24:30, 14:20, 30:36] = True
    mask[26, 10:22, 28:38] = True  # slice 26 has the most mask voxels
    anomaly = np.where(brain, 0.05, 0).astype(np.float32)
    anomaly[mask] = 0.9
    return image, brain, anomaly, mask


def test_slices_follow_the_mask_and_are_spread():
    _, brain, anomaly, mask = phantom()
    slices = choose_slices(mask, anomaly, brain, 3)
    assert 26 in slices and len(slices) == 3
    assert all(24 <= z < 30 for z in slices)
    assert min(np.diff(slices)) >= 2  # 6-slice extent / 3: not neighbours
    assert choose_slices(mask, anomaly, brain, 1) == [26]


def test_slices_without_mask_are_even_through_the_brain():
    _, brain, anomaly, _ = phantom()
    slices = choose_slices(np.zeros_like(brain), anomaly, brain, 4)
    occupied = np.flatnonzero(brain.any(axis=(1, 2)))
    assert len(slices) == 4 and occupied[0] < slices[0] and slices[-1] < occupied[-1]
    assert np.ptp(np.diff(slices)) <= 1


def test_png_is_written_and_readable(tmp_path):
    image, brain, anomaly, mask = phantom()
    path = write_overview_png(image, image * 0.9, anomaly, mask, tmp_path / "overview.png", n_slices=4,
                              title="phantom")
    assert [p.name for p in tmp_path.iterdir()] == ["overview.png"]
    pixels = matplotlib.image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    # The mask colour (amber) is drawn somewhere.
    amber = (pixels[..., 0] > 0.6) & (pixels[..., 1] > 0.4) & (pixels[..., 2] < 0.35)
    assert amber.sum() > 20


def test_empty_mask_still_gives_an_overview(tmp_path):
    image, brain, anomaly, _ = phantom()
    path = write_overview_png(image, image, anomaly, np.zeros_like(brain), tmp_path / "o.png", brain=brain)
    assert matplotlib.image.imread(str(path)).shape[0] > 300


def test_shape_mismatch_is_refused(tmp_path):
    image, _, anomaly, mask = phantom()
    with pytest.raises(ValueError, match="one shape"):
        write_overview_png(image, image[:-1], anomaly, mask, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()
