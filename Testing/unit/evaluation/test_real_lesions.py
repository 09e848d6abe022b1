"""Real lesion shapes carried into healthy heads (the report part's lesions of the evaluation protocol)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from UADContrastiveLib.evaluation.real_lesions import (
    T1_LEVELS,
    T2_LEVELS,
    donor_part,
    donors,
    lesion_appearance,
    place_lesion,
    validation_part,
)


def labelled_cube(size=(30, 30, 20), spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    labels = np.zeros(size[::-1], np.uint8)
    labels[5:9, 10:16, 10:16] = 2
    labels[6:8, 12:14, 12:14] = 1
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    image.SetOrigin((-15.0, -15.0, -20.0))
    return image


def test_identity_placement_keeps_shape_and_sub_regions():
    donor = labelled_cube()
    placed = place_lesion(donor, sitk.AffineTransform(3), donor, sitk.AffineTransform(3))
    assert np.array_equal(placed, sitk.GetArrayFromImage(donor))


def test_placement_follows_both_registrations_at_the_recipients_resolution():
    donor = labelled_cube()
    recipient = sitk.Image([60, 60, 40], sitk.sitkUInt8)
    recipient.SetSpacing((0.5, 0.5, 1.0))
    # samples off the donor's voxel faces (on a face, linear interpolation gives exactly 0.5)
    recipient.SetOrigin((-14.75, -14.75, -19.5))
    # the recipient's anatomy sits 4 mm further along x than the template's; the donor's on it
    shift = sitk.TranslationTransform(3, (4.0, 0.0, 0.0))
    placed = place_lesion(donor, sitk.AffineTransform(3), recipient, shift)
    donor_volume = (sitk.GetArrayFromImage(donor) > 0).sum() * 2.0
    assert abs((placed > 0).sum() * 0.25 - donor_volume) / donor_volume < 0.05
    z, y, x = np.nonzero(placed)
    centre_x_mm = -14.75 + 0.5 * x.mean()
    assert abs(centre_x_mm - (-15.0 + 12.5 + 4.0)) < 0.6  # cube centre x = 12.5 mm from the origin, +4
    assert set(np.unique(placed)) == {0, 1, 2}


def test_t1_appearance_darkens_the_lesion_towards_its_level_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    image = np.full((20, 30, 30), 100.0, np.float32)
    brain = np.zeros(image.shape, bool)
    brain[2:18, 3:27, 3:27] = True
    labels = np.zeros(image.shape, np.int16)
    labels[8:12, 12:18, 12:18] = 1
    out = lesion_appearance(image, brain, labels, "wml", rng)
    assert abs(float(out[labels > 0].mean()) - T1_LEVELS["wml"][None] * 100.0) < 5.0
    assert np.array_equal(out[~brain], image[~brain])
    far = brain.copy()
    far[5:15, 9:21, 9:21] = False
    assert np.abs(out[far] - 100.0).max() < 1e-3


def test_tuning_and_report_parts_are_disjoint_and_both_used(shared_data):
    found = donors(shared_data / "lesions")
    parts = {donor_part(d) for d in found}
    assert parts == {"tuning", "report"}
    assert {d.kind for d in found} == {"brats", "wml", "stroke"}
    assert validation_part("IXI059-HH-1284") in ("tuning", "report")


def test_t2_appearance_brightens_every_kind_against_the_brain_median():
    image = np.random.default_rng(1).normal(100.0, 5.0, (20, 30, 30)).astype(np.float32)
    brain = np.zeros(image.shape, bool)
    brain[2:18, 3:27, 3:27] = True
    labels = np.zeros(image.shape, np.int16)
    labels[8:12, 12:18, 12:18] = 2  # oedema
    median = float(np.median(image[brain]))
    for kind, level in (("brats", T2_LEVELS["brats"][2]), ("wml", T2_LEVELS["wml"][None]),
                        ("stroke", T2_LEVELS["stroke"][None])):
        out = lesion_appearance(image, brain, labels, kind, np.random.default_rng(0), "T2")
        assert abs(float(out[labels > 0].mean()) - level * median) < 0.05 * level * median
        assert out[labels > 0].mean() > 1.2 * image[brain].mean() and np.array_equal(out[~brain], image[~brain])
    t1 = lesion_appearance(image, brain, labels, "wml", np.random.default_rng(0))
    assert t1[labels > 0].mean() < image[brain].mean()  # the default stays the T1 look
