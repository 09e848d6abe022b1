"""Appearance augmentation: structure-wise contrast on the atlas's structures, sharpening, and a
random state that resumes exactly."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from UADContrastiveLib.preprocess.templates import load_atlas
from UADContrastiveLib.training.augment import (
    REGIONAL_FACTORS,
    Augment,
    RegionalContrast,
    Sharpen,
    regional_weights,
)


@pytest.fixture(scope="module")
def atlas_and_weights():
    atlas, names = load_atlas()
    labels = sitk.GetArrayFromImage(atlas)
    putamen = [label for label, (name, _) in names.table.items() if name and "Putamen" in name]
    return labels, putamen, regional_weights(labels, names)


def test_deep_grey_matter_is_scaled_within_the_range_and_white_matter_is_untouched(atlas_and_weights):
    labels, putamen, weights = atlas_and_weights
    position = int(np.argmax(np.isin(labels, putamen).sum(axis=(1, 2))))  # the slice with most putamen
    image = torch.ones((1, *labels.shape[1:]))
    changed = RegionalContrast(1.0, weights, seed=3)(image, position)[0].numpy()
    deep = weights[0, position]
    core = np.isin(labels[position], putamen) & (deep > 0.8) & (weights[1:, position].max(axis=0) == 0)
    assert core.sum() > 20
    factor = 1 + (changed[core] - 1) / deep[core]  # one factor for the group, faded at its soft edge
    assert np.ptp(factor) < 1e-4 and REGIONAL_FACTORS[0] <= factor[0] <= REGIONAL_FACTORS[1] and factor[0] != 1.0
    far = weights[:, position].max(axis=0) == 0
    assert far.sum() > 1000 and np.all(changed[far] == 1.0)


def test_a_slice_off_the_atlas_grid_is_refused(atlas_and_weights):
    weights = atlas_and_weights[2]
    with pytest.raises(ValueError, match="T1 template"):
        RegionalContrast(1.0, weights, seed=0)(torch.ones((1, 64, 64)), 10)


def test_sharpening_steepens_an_edge_and_leaves_flat_tissue_alone():
    image = torch.zeros((1, 32, 32))
    image[:, :, 16:] = 1.0
    sharpened = Sharpen(1.0, seed=0)(image)[0].numpy()
    assert sharpened[:, 16].min() > 1.0 and sharpened[:, 15].max() < 0.0  # overshoot on both sides
    assert np.allclose(sharpened[:, :8], 0.0, atol=1e-6) and np.allclose(sharpened[:, 24:], 1.0, atol=1e-6)


def test_the_appearance_transforms_resume_exactly():
    config = {"gamma": 0.5, "regional_contrast": 0.5, "sharpen": 0.5}
    images = torch.rand((6, 1, 96, 96)) * 0.8
    brains = torch.ones((6, 1, 96, 96))
    positions = np.array([30, 35, 40, 45, 50, 55])
    first = Augment(config, seed=1)
    first(images, brains, positions)
    state = first.state()
    resumed = Augment(config, seed=99)
    resumed.set_state(state)
    torch.testing.assert_close(first(images, brains, positions), resumed(images, brains, positions), rtol=0, atol=0)
    with pytest.raises(ValueError, match="positions"):
        first(images, brains)
