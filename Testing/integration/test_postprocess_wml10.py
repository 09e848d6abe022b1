"""Real white-matter-lesion masks (wml10: 0/255, a singleton 4th axis, 0.94 x 0.94 x 3 mm):
written as .seg.nrrd with the input's exact geometry, and evaluated."""
from __future__ import annotations

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from scipy import ndimage
from slicer_reading import read_with_slicer
from UADContrastiveLib.evaluation.metrics import lesion_detection_by_size
from UADContrastiveLib.evaluation.scoring import evaluate_case
from UADContrastiveLib.io import read_mask
from UADContrastiveLib.outputs.segmentation import ijk_to_lps, write_segmentation

pytestmark = pytest.mark.shared_data
SUBJECT = "301D00252-20040121"


@pytest.fixture(scope="module")
def wml_case(shared_data):
    folder = shared_data / "lesions" / "wml10" / SUBJECT
    lesion = read_mask(folder / "lesion_mask.nii.gz")
    brain = read_mask(folder / "brain_mask.nii.gz", reference=lesion)
    return folder, lesion, brain


def test_real_lesion_mask_to_seg_nrrd_keeps_geometry(wml_case, tmp_path):
    folder, lesion, _ = wml_case
    raw = nibabel.load(str(folder / "lesion_mask.nii.gz"))
    assert raw.shape[3:] == (1,) and raw.get_data_dtype() == np.uint8  # the awkward input of this test
    stored = np.asarray(raw.dataobj)
    assert set(np.unique(stored)) == {0, 255}
    expected_voxels = int(np.count_nonzero(stored))
    assert lesion.GetSize() == raw.shape[:3]

    path = write_segmentation(lesion, tmp_path / f"{SUBJECT}.seg.nrrd")
    read = slicerio.read_segmentation(str(path))
    assert slicerio.segment_names(read) == ["Anomaly"]
    voxels = slicerio.segment_mask(read, "Anomaly")
    assert voxels.shape == lesion.GetSize()
    assert int(voxels.sum()) == expected_voxels
    np.testing.assert_allclose(read["ijkToLPS"], ijk_to_lps(lesion), rtol=0, atol=1e-9)
    back = sitk.ReadImage(str(path))
    assert back.GetSize() == lesion.GetSize()
    for got, want in ((back.GetSpacing(), lesion.GetSpacing()), (back.GetOrigin(), lesion.GetOrigin()),
                      (back.GetDirection(), lesion.GetDirection())):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back) > 0, sitk.GetArrayViewFromImage(lesion) > 0)


def test_real_lesion_mask_loads_in_slicer(wml_case, tmp_path):
    _, lesion, _ = wml_case
    path = write_segmentation(lesion, tmp_path / "lesion.seg.nrrd")
    (segment,) = read_with_slicer(path)
    assert segment["name"] == "Anomaly"
    assert segment["voxels"] == int(sitk.GetArrayViewFromImage(lesion).sum())


def test_evaluate_real_lesions_with_a_synthetic_map(wml_case):
    """A map that is high on the real lesions (blurred) plus noise: every lesion, even a 1-voxel
    one (blurred peak ~0.18), is found at a low threshold, and the per-size counts add up to the lesion count. Synthetic map, real lesions."""
    _, lesion_image, brain_image = wml_case
    lesion = sitk.GetArrayFromImage(lesion_image) > 0
    brain = sitk.GetArrayFromImage(brain_image) > 0
    spacing = lesion_image.GetSpacing()
    rng = np.random.default_rng(0)
    anomaly = ndimage.gaussian_filter(lesion.astype(np.float32), 0.7) + 0.05 * rng.random(lesion.shape)
    row = evaluate_case(anomaly, lesion, brain, threshold=0.12, spacing=spacing)
    labels, count = ndimage.label(lesion, ndimage.generate_binary_structure(3, 3))
    assert row["lesions"] == count > 0
    assert sum(v for k, v in row.items() if k.startswith("lesions ")) == count
    assert row["lesion_ml_outside_brain"] == 0.0
    assert row["lesions_detected"] == count
    assert row["auroc"] > 0.99 and row["auprc"] > 0.9
    # the low threshold flags the blur around each lesion: Dice is modest, the best threshold does better
    assert 0.3 < row["dice"] < row["best_dice"] and row["best_dice"] > 0.8
    assert row["lesion_ml"] == pytest.approx(lesion.sum() * np.prod(spacing) / 1000)
    nothing = lesion_detection_by_size(np.zeros_like(lesion), lesion, spacing)
    assert nothing["all"] == {"lesions": count, "detected": 0, "rate": 0.0}
