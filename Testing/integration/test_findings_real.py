"""Findings on real heads: the label atlas carried back through the detection path (its Dice per
lobe on heads it was not built from), a lesion inserted into a known structure named with that
lobe and side, and the same head in three orientations giving the same findings."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from UADContrastiveLib.datasets import ixi_subjects, split
from UADContrastiveLib.evaluation.real_lesions import healthy_parts
from UADContrastiveLib.io import image_like, read_volume, write_volume
from UADContrastiveLib.outputs.anatomy import LOBES
from UADContrastiveLib.outputs.atlas_transfer import DEFORMABLE, atlas_on_input
from UADContrastiveLib.outputs.findings import describe_regions, input_to_template_ras
from UADContrastiveLib.preprocess.checked import preprocess_checked
from UADContrastiveLib.preprocess.templates import load_atlas, load_template

ATLAS_HEADS = 40  # `uadc template` builds from the first 40 training heads
# Carried affinely, thin (cingulate, insular cortex) or age-dependent (ventricles) structures
# reached only 0.50-0.75 on these heads; with the deformable step every lobe, side and head
# reaches 0.71 or more (docs/findings.md).
DICE_FLOOR = 0.7


@pytest.fixture(scope="module")
def atlas():
    return load_atlas()


@pytest.fixture(scope="module")
def template():
    return load_template()


def carried_atlas(image, template, atlas, flagged=None):
    """(preprocessed, atlas labels on the image's grid) exactly as `uadc detect` carries them."""
    pre, _ = preprocess_checked(image, template)
    labels, registration = atlas_on_input(pre, template, atlas[0], flagged)
    assert registration == DEFORMABLE
    return pre, sitk.GetArrayFromImage(labels)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))


def test_atlas_dice_per_lobe_on_heads_it_was_not_built_from(shared_data, template, atlas):
    names = atlas[1]
    training, _ = split(ixi_subjects(shared_data / "ixi_t1"))
    heads = training[ATLAS_HEADS::20][:4]
    print(f"\nleave-out Dice of the atlas carried back through the detection path (deformable), "
          f"{len(heads)} IXI training heads not in the atlas")
    print(f"{'lobe':<18}" + "".join(f"{h.id[:13]:>32}" for h in heads))
    print(f"{'':<18}" + "   right / left / whole" * len(heads))
    table = {lobe: [] for lobe in LOBES}
    for subject in heads:
        _, carried = carried_atlas(read_volume(subject.image), template, atlas)
        own = sitk.GetArrayFromImage(sitk.ReadImage(str(subject.brain_mask)))
        for lobe in LOBES:
            scores = {side: dice(np.isin(carried, names.labels(lobe, side)), np.isin(own, names.labels(lobe, side)))
                      for side in ("right", "left") if names.labels(lobe, side)}
            scores["whole"] = dice(np.isin(carried, names.labels(lobe)), np.isin(own, names.labels(lobe)))
            table[lobe].append(scores)
    for lobe, rows in table.items():
        print(f"{lobe:<18}" + "".join(f"{' / '.join(f'{v:.2f}' for v in row.values()):>32}" for row in rows))
    for lobe, rows in table.items():
        assert min(min(row.values()) for row in rows) >= DICE_FLOOR, (lobe, rows)


def spherical_lesion(labels: np.ndarray, label: int, radius_mm: float, spacing_zyx) -> np.ndarray:
    """A ball around the deepest voxel of `label`, cut to the structure: a lesion in it."""
    inside = labels == label
    depth = ndimage.distance_transform_edt(inside, sampling=spacing_zyx)
    centre = np.unravel_index(np.argmax(depth), labels.shape)
    grid = np.ogrid[tuple(slice(0, n) for n in labels.shape)]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing_zyx))
    return (distance2 <= radius_mm ** 2) & inside


@pytest.fixture(scope="module")
def lesioned_head(shared_data, tmp_path_factory):
    """A tuning head with a T1-dark lesion in its own right frontal white matter (DLMUSE 81) and
    a smaller one in its left temporal white matter (88), written in three orientations."""
    subject = healthy_parts(shared_data / "ixi_t1")["tuning"][0]
    image = read_volume(subject.image)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(subject.brain_mask)))
    spacing = np.asarray(image.GetSpacing())[::-1]
    frontal = spherical_lesion(labels, 81, 8.0, spacing)
    temporal = spherical_lesion(labels, 88, 5.0, spacing)
    assert frontal.sum() > temporal.sum() > 10
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    lesion = frontal | temporal
    array[lesion] *= 0.6
    mask = image_like(lesion.astype(np.uint8), image)
    folder = tmp_path_factory.mktemp("orientations")
    paths = {}
    for orientation in ("PSR", "LPS", "RAS"):  # IXI's own, DICOM's, NIfTI's usual
        paths[orientation] = (write_volume(sitk.DICOMOrient(image_like(array, image), orientation),
                                           folder / f"head_{orientation}.nii.gz"),
                              write_volume(sitk.DICOMOrient(mask, orientation), folder / f"lesion_{orientation}.nii.gz"))
    return subject, paths


def findings_for(paths, template, atlas):
    image = read_volume(paths[0])
    flagged = sitk.ReadImage(str(paths[1]))
    lesion = sitk.GetArrayFromImage(flagged)
    pre, anatomy = carried_atlas(image, template, atlas, flagged)  # the lesion as the detection flags it
    return image, describe_regions(5.0 * lesion.astype(np.float32), lesion, anatomy, image,
                                   input_to_template_ras(pre.transform), atlas[1])


def test_a_lesion_in_a_known_structure_is_named_with_its_lobe_and_side(lesioned_head, template, atlas):
    _, paths = lesioned_head
    _, findings = findings_for(paths["PSR"], template, atlas)
    frontal, temporal = findings
    print(f"\n{frontal}\n{temporal}")
    assert (frontal["hemisphere"], frontal["lobe"], frontal["location"]) == (
        "right", "frontal", "right frontal white matter")
    assert frontal["structures"][0]["name"] == "Frontal_WM_R" and frontal["structures"][0]["share"] >= 0.5
    assert (temporal["hemisphere"], temporal["lobe"]) == ("left", "temporal")
    # MNI: right is x > 0; the temporal lobe lies lower than the frontal white matter
    assert frontal["centroid_template_mm"][0] > 10 and temporal["centroid_template_mm"][0] < -25
    assert temporal["centroid_template_mm"][2] < frontal["centroid_template_mm"][2]
    assert not frontal["at_brain_edge"]


def test_the_same_head_in_three_orientations_gives_the_same_findings(lesioned_head, template, atlas):
    _, paths = lesioned_head
    results = {orientation: findings_for(p, template, atlas) for orientation, p in paths.items()}
    directions = {o: np.round(image.GetDirection(), 3).tolist() for o, (image, _) in results.items()}
    assert len({str(d) for d in directions.values()}) == 3  # three different layouts
    reference = results["PSR"][1]
    voxel_mm = max(results["PSR"][0].GetSpacing())
    for orientation, (_, findings) in results.items():
        assert [(f["hemisphere"], f["lobe"], f["location"], f["voxels"]) for f in findings] == \
            [(f["hemisphere"], f["lobe"], f["location"], f["voxels"]) for f in reference], orientation
        for found, expected in zip(findings, reference):
            assert np.linalg.norm(np.subtract(found["centroid_ras_mm"], expected["centroid_ras_mm"])) <= voxel_mm
            assert np.linalg.norm(np.subtract(found["centroid_template_mm"],
                                              expected["centroid_template_mm"])) <= voxel_mm
