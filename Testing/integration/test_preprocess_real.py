"""Preprocessing on the real shared data: brain-mask Dice and the exact inverse to the input grid.

Every subject is preprocessed once per session (registration takes seconds); the
tests then read the cached results.
"""
from __future__ import annotations

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.datasets import brats_cases, ixi_subjects, split, wml_cases
from UADContrastiveLib.evaluation.metrics import dice
from UADContrastiveLib.io import read_mask, read_volume, same_grid, write_volume
from UADContrastiveLib.preprocess.pipeline import preprocess
from UADContrastiveLib.preprocess.templates import load_template

IXI_CHECKED = 10


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def ixi_validation(shared_data):
    """Ten validation subjects: never used to build the template or to tune the registration."""
    _, validation = split(ixi_subjects(shared_data / "ixi_t1"))
    return validation[:IXI_CHECKED]


@pytest.fixture(scope="module")
def preprocessed_ixi(ixi_validation, template):
    return {s.id: (s, preprocess(read_volume(s.image), template, source=s.image)) for s in ixi_validation}


@pytest.fixture(scope="module")
def lesion_inputs(shared_data):
    root = shared_data / "lesions"
    cases = [(f"brats/{s.id}", s) for s in brats_cases(root / "brats2013")]
    cases += [(f"wml10/{s.id}", s) for s in wml_cases(root / "wml10")]
    isles = root / "isles22" / "sub-strokecase0009"
    cases.append(("isles22/dwi", type(cases[0][1])("dwi", isles / "dwi.nii.gz", None, isles / "lesion_mask.nii.gz")))
    return cases


@pytest.fixture(scope="module")
def preprocessed_lesions(lesion_inputs, template):
    return {name: (s, preprocess(read_volume(s.image), template, source=s.image)) for name, s in lesion_inputs}


def test_ixi_brain_mask_dice_against_dlmuse(preprocessed_ixi):
    scores = {}
    for subject_id, (subject, result) in preprocessed_ixi.items():
        reference = sitk.GetArrayFromImage(read_mask(subject.brain_mask))
        scores[subject_id] = dice(sitk.GetArrayFromImage(result.brain_mask_input) > 0, reference > 0)
        assert result.brain_source.startswith("template"), "IXI heads must take the whole-head path"
    print("IXI brain-mask Dice:", {k: round(v, 3) for k, v in scores.items()})
    assert min(scores.values()) >= 0.90, scores


def test_brats_brain_mask_dice(preprocessed_lesions):
    scores = {}
    for name, (subject, result) in preprocessed_lesions.items():
        if name.startswith("brats/"):
            reference = sitk.GetArrayFromImage(read_mask(subject.brain_mask))
            scores[name] = dice(sitk.GetArrayFromImage(result.brain_mask_input) > 0, reference > 0)
    print("BraTS brain-mask Dice:", {k: round(v, 3) for k, v in scores.items()})
    assert len(scores) == 6 and min(scores.values()) >= 0.85, scores


def coordinate_map(result):
    """Model-grid map whose value is the voxel's physical x + 2y + 3z (mm): any misplacement shows."""
    reference = result.model_input
    z, y, x = np.indices(sitk.GetArrayViewFromImage(reference).shape)
    origin, spacing = np.array(reference.GetOrigin()), np.array(reference.GetSpacing())
    px, py, pz = (origin[i] + spacing[i] * idx for i, idx in enumerate((x, y, z)))
    return (px + 2 * py + 3 * pz).astype(np.float32)


def check_round_trip(result, input_path, tmp_path):
    carried = result.to_input_grid(coordinate_map(result), default=np.nan)
    image = read_volume(input_path)
    assert same_grid(carried, image)
    # Value check: at input voxels inside the brain, the map equals the model-space coordinate
    # that the registration maps onto that voxel.
    array = sitk.GetArrayFromImage(carried)
    brain = np.argwhere(sitk.GetArrayViewFromImage(result.brain_mask_input) > 0)
    rng = np.random.default_rng(0)
    inverse = result.transform.GetInverse()
    model = result.model_input
    checked = 0
    for k, j, i in brain[rng.choice(len(brain), 200, replace=False)]:
        point = np.array(inverse.TransformPoint(image.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))))
        index = np.array(model.TransformPhysicalPointToContinuousIndex(point.tolist()))
        if np.any(index < 1) or np.any(index > np.array(model.GetSize()) - 2):
            continue  # at the box's rim linear interpolation has one-sided neighbours
        expected = point[0] + 2 * point[1] + 3 * point[2]
        assert array[k, j, i] == pytest.approx(expected, abs=1e-2)
        checked += 1
    assert checked >= 50
    # Geometry as nibabel sees it, against the original file.
    out = write_volume(carried, tmp_path / "carried.nii.gz")
    original, written = nibabel.load(str(input_path)), nibabel.load(str(out))
    assert written.shape == original.shape[:3]
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-3)


def test_round_trip_lesion_cases(preprocessed_lesions, tmp_path):
    assert len(preprocessed_lesions) == 17
    for _name, (subject, result) in preprocessed_lesions.items():
        check_round_trip(result, subject.image, tmp_path)


def test_round_trip_ixi(preprocessed_ixi, tmp_path):
    for subject, result in preprocessed_ixi.values():
        check_round_trip(result, subject.image, tmp_path)


def test_model_input_is_normalised_brain(preprocessed_ixi):
    for _subject, result in preprocessed_ixi.values():
        array = sitk.GetArrayFromImage(result.model_input)
        brain = sitk.GetArrayFromImage(result.brain_mask_model) > 0
        assert array.shape == (80, 96, 96)
        assert np.all(array[~brain] == 0)
        assert 0.3 < np.median(array[brain]) < 0.95
        assert 0.6 < brain.sum() * 8 / 1000 / 1000 < 2.2  # litres of brain on the model grid


def test_registration_repeats_bit_for_bit_with_threads_available(shared_data, template):
    """BraTS pat0006 once passed the registration check and once failed it: ITK's threads
    summed the metric in varying order. Registration now runs on one ITK thread; the rest of
    ITK keeps the threads it had."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        image = read_volume(shared_data / "lesions" / "brats2013" / "brats_2013_pat0006_1" / "t1c.nii.gz")
        first, second = (preprocess(image, template).transform.GetParameters() for _ in range(2))
        assert first == second
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
