"""Preprocessing steps on synthetic volumes: each function alone, and the inverse."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from UADContrastiveLib.io import same_grid
from UADContrastiveLib.preprocess.brain_mask import foreground_volume_ml, looks_skull_stripped
from UADContrastiveLib.preprocess.intensity import normalise_intensity
from UADContrastiveLib.preprocess.pipeline import Preprocessed
from UADContrastiveLib.preprocess.registration import canonical_orientation, register_affine
from UADContrastiveLib.preprocess.templates import ModelGrid

PERMUTED_DIRECTIONS = {
    "LPS": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "PSR": (0, 0, -1, 1, 0, 0, 0, 1, 0),
    "LAS": (1, 0, 0, 0, -1, 0, 0, 0, 1),
    "RAS": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


def ellipsoid(size=(60, 70, 50), spacing=(2.0, 2.0, 2.0), radii=(45.0, 55.0, 40.0), direction="LPS"):
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(PERMUTED_DIRECTIONS[direction])
    center = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in size])
    image.SetOrigin(tuple(np.array(image.GetOrigin()) - np.array(center)))
    points = sitk.GetArrayFromImage(sitk.PhysicalPointSource(
        sitk.sitkVectorFloat64, size, image.GetOrigin(), spacing, image.GetDirection()))
    inside = ((points[..., 0] / radii[0]) ** 2 + (points[..., 1] / radii[1]) ** 2 + (points[..., 2] / radii[2]) ** 2) < 1
    # an inner structure so registration has something to lock on
    inner = ((points[..., 0] - 10) ** 2 + points[..., 1] ** 2 + (points[..., 2] - 5) ** 2) < 15 ** 2
    array = np.where(inside, 100.0, 0.0) + np.where(inner, 60.0, 0.0)
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(image)
    return out


def test_canonical_orientation_keeps_physical_positions():
    image = ellipsoid(direction="PSR")
    canonical = canonical_orientation(image)
    np.testing.assert_allclose(canonical.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    for index in [(3, 4, 5), (20, 30, 40)]:
        point = image.TransformIndexToPhysicalPoint(index)
        assert canonical[canonical.TransformPhysicalPointToIndex(point)] == image[index]


def test_normalise_intensity_maps_percentiles():
    rng = np.random.default_rng(0)
    array = rng.normal(100, 20, (10, 10, 10)).astype(np.float32)
    mask = np.zeros_like(array, np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    normalised, (low, high) = normalise_intensity(array, mask)
    assert normalised[mask == 0].max() == 0
    inside = normalised[mask > 0]
    assert np.percentile(inside, 1) == pytest.approx(0.0, abs=2e-3)
    assert np.percentile(inside, 99) == pytest.approx(1.0, abs=1e-2)
    np.testing.assert_allclose(low, np.percentile(array[mask > 0], 1))


def test_skull_stripped_detection_by_foreground_volume():
    brain = ellipsoid()  # about 0.41 L
    assert looks_skull_stripped(brain)
    head = ellipsoid(size=(100, 110, 100), radii=(90, 110, 95))  # about 3.9 L
    assert not looks_skull_stripped(head)
    volume, _ = foreground_volume_ml(brain)
    assert volume == pytest.approx(4 / 3 * np.pi * 45 * 55 * 40 / 1000, rel=0.05)


def test_register_affine_recovers_a_known_shift_and_scale():
    fixed = ellipsoid()
    truth = sitk.AffineTransform(3)
    truth.SetMatrix((1.08, 0, 0, 0, 0.95, 0, 0, 0, 1.0))
    truth.SetTranslation((6.0, -4.0, 3.0))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkLinear, 0.0)
    found = register_affine(fixed, moving)
    for point in [(0, 0, 0), (30, -20, 10), (-25, 35, -15)]:
        np.testing.assert_allclose(found.TransformPoint(point), truth.TransformPoint(point), atol=2.0)


def fake_preprocessed(input_image: sitk.Image, transform: sitk.Transform) -> Preprocessed:
    grid = ModelGrid(size=(24, 24, 20), spacing=4.0, center_lps=(0.0, 0.0, 0.0))
    reference = grid.reference()
    mask_model = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask_model.CopyInformation(reference)
    mask_input = sitk.Image(input_image.GetSize(), sitk.sitkUInt8)
    mask_input.CopyInformation(input_image)
    return Preprocessed(input_image, transform, reference, mask_model, mask_input, (0.0, 1.0), "test")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(*[st.integers(8, 40)] * 3),
    spacing=st.tuples(*[st.floats(0.4, 4.0)] * 3),
    orientation=st.sampled_from(sorted(PERMUTED_DIRECTIONS)),
    dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64]),
    shift=st.tuples(*[st.floats(-20, 20)] * 3),
)
def test_any_grid_round_trips_exactly(shape, spacing, orientation, dtype, shift):
    image = sitk.GetImageFromArray(np.zeros(shape, dtype))
    image.SetSpacing(spacing)
    image.SetDirection(PERMUTED_DIRECTIONS[orientation])
    image.SetOrigin(shift)
    transform = sitk.AffineTransform(3)
    transform.SetTranslation(shift)
    result = fake_preprocessed(image, transform)
    model_map = np.ones(sitk.GetArrayViewFromImage(result.model_input).shape, np.float32)
    back = result.to_input_grid(model_map)
    assert same_grid(back, image, tolerance=0)
    assert sitk.GetArrayViewFromImage(back).shape == shape
