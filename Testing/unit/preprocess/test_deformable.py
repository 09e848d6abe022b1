"""The deformable step that carries the label atlas onto a scan (preprocess.deformable,
outputs.atlas_transfer), on the shipped template warped by a known smooth field: it recovers the
warp, gives the same field on every run, lets a masked lesion pull nothing, and falls back to
the affine atlas (said in the report) when it fails."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.outputs import atlas_transfer
from UADContrastiveLib.outputs.report import build_report
from UADContrastiveLib.preprocess import deformable
from UADContrastiveLib.preprocess.deformable import register_deformable
from UADContrastiveLib.preprocess.pipeline import Preprocessed
from UADContrastiveLib.preprocess.templates import load_atlas, load_template

VENTRICLES = (4, 11, 49, 50, 51, 52)  # DLMUSE: 3rd, 4th, right and left lateral ventricles


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def atlas():
    return load_atlas()[0]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


def labels_through(atlas: sitk.Image, transform: sitk.Transform) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(atlas, atlas, transform, sitk.sitkNearestNeighbor, 0))


@pytest.fixture(scope="module")
def shrunken_ventricles(template, atlas):
    """The template brain as a scan whose centre is pulled inwards by up to 8 mm (its ventricles
    look larger than the template's), and the true fixed -> template transform."""
    reference = template.brain
    centre = np.mean(np.argwhere(np.isin(sitk.GetArrayViewFromImage(atlas), VENTRICLES)), axis=0)
    grid = np.indices(sitk.GetArrayViewFromImage(reference).shape, dtype=np.float64)
    offset = grid - centre[:, None, None, None]
    radius_mm = 2.0 * np.sqrt((offset ** 2).sum(axis=0))
    pull = 8.0 * np.exp(-(radius_mm / 25.0) ** 2) / np.maximum(radius_mm, 1e-6)  # mm of pull per mm of radius
    displacement = -(offset * 2.0) * pull  # towards the centre, in mm; (z, y, x) components
    field = sitk.GetImageFromArray(np.moveaxis(displacement[::-1], 0, -1), isVector=True)
    field.CopyInformation(reference)
    truth = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    scan = sitk.Resample(reference, reference, truth, sitk.sitkLinear, 0.0)
    return scan, truth


def test_the_deformable_step_recovers_a_known_warp_of_the_ventricles(template, atlas, shrunken_ventricles):
    scan, truth = shrunken_ventricles
    expected = np.isin(labels_through(atlas, truth), VENTRICLES)
    affine_only = dice(np.isin(sitk.GetArrayViewFromImage(atlas), VENTRICLES), expected)
    recovered = dice(np.isin(labels_through(atlas, register_deformable(scan, template.brain)), VENTRICLES), expected)
    print(f"\nventricles Dice against the true warp: affine {affine_only:.2f}, deformable {recovered:.2f}")
    assert affine_only < 0.8 and recovered > 0.9


def test_the_same_images_give_the_same_field(template, shrunken_ventricles):
    scan, _ = shrunken_ventricles
    fields = [sitk.GetArrayFromImage(register_deformable(scan, template.brain).GetDisplacementField())
              for _ in range(2)]
    assert np.array_equal(*fields) and np.abs(fields[0]).max() > 1.0


def test_a_masked_lesion_does_not_pull_the_field(template):
    scan = sitk.GetArrayFromImage(template.brain)
    brain = scan > 0
    grid = np.indices(scan.shape)
    centre = np.mean(np.argwhere(brain), axis=0) + (0, 0, 15)  # in the right hemisphere's white matter
    lesion = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0) <= 6 ** 2  # 12 mm radius
    scan[lesion & brain] = 1.5
    fixed = sitk.GetImageFromArray(scan)
    fixed.CopyInformation(template.brain)

    def pull(ignore):
        field = sitk.GetArrayFromImage(register_deformable(fixed, template.brain, ignore).GetDisplacementField())
        return float(np.linalg.norm(field, axis=-1)[lesion].mean())

    free, masked = pull(None), pull(lesion)
    print(f"\nmean displacement in the lesion: {free:.2f} mm free, {masked:.2f} mm masked")
    assert free > 1.0 and masked < 0.25 * free


def test_a_failed_deformable_step_falls_back_to_the_affine_atlas(template, atlas, monkeypatch):
    def failing(*_):
        raise RuntimeError("ITK: demons diverged")

    monkeypatch.setattr(deformable, "register_deformable", failing)
    identity = sitk.AffineTransform(3)
    mask = sitk.Cast(template.brain > 0, sitk.sitkUInt8)
    pre = Preprocessed(template.head, identity, template.brain, mask, mask, (0.0, 1.0), "given")
    labels, how = atlas_transfer.atlas_on_input(pre, template, atlas)
    assert how == atlas_transfer.AFFINE
    assert np.array_equal(sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(atlas))
    fields = dict(input_name="x", model={}, device="cpu", threshold=1.0, threshold_method="card",
                  thresholds_available={}, min_size_mm3=0.0, brain_source="given", brain_volume_ml=1000.0,
                  quality={"warnings": []}, components=[], preprocessing={}, timings={}, findings=[],
                  input_to_template_ras=None)
    fallback = build_report(**fields, anatomy_registration=how)
    assert fallback["anatomy_registration"] == "affine" and "affinely" in fallback["warnings"][0]
    assert build_report(**fields, anatomy_registration=atlas_transfer.DEFORMABLE)["warnings"] == []
