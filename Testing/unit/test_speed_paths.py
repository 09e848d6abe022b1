"""The fast paths of detection give the results of the plain ones (issue 12)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from UADContrastiveLib.preprocess.pipeline import fill_holes, no_finer_than


@pytest.mark.parametrize("density", [0.45, 0.55, 0.65, 0.75])
def test_fill_holes_equals_scipy(density):
    rng = np.random.default_rng(int(density * 100))
    mask = ndimage.binary_opening(rng.random((30, 25, 20)) < density)
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_fill_holes_keeps_an_enclosed_cavity_filled_and_an_open_one_empty():
    mask = np.ones((9, 9, 9), bool)
    mask[3:6, 3:6, 3:6] = False       # enclosed: a hole
    mask[0:2, 1, 1] = False           # a dent from the border: not a hole
    filled = fill_holes(mask)
    assert filled[4, 4, 4] and not filled[0, 1, 1] and not filled[1, 1, 1]


def _image(spacing):
    image = sitk.Image([40, 30, 20], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    return image


def test_registration_input_is_block_averaged_down_to_the_template_spacing():
    template = _image((2.0, 2.0, 2.0))
    assert no_finer_than(_image((1.0, 1.0, 1.0)), template).GetSize() == (20, 15, 10)
    assert no_finer_than(_image((0.9, 1.0, 3.0)), template).GetSpacing() == pytest.approx((1.8, 2.0, 3.0))
    coarse = _image((2.0, 2.0, 2.0))
    assert no_finer_than(coarse, template) is coarse  # a 2 mm input is registered as it is
