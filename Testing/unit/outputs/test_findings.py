"""Findings: regions of a mask named by anatomy (outputs.findings), on synthetic grids whose
answers are known by construction, and the shipped atlas's table and checksum."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.outputs.anatomy import AnatomyNames
from UADContrastiveLib.outputs.findings import (
    describe_regions,
    findings_table,
    input_to_template_ras,
    label_regions,
)
from UADContrastiveLib.outputs.overview import region_numbers
from UADContrastiveLib.preprocess.template_build import LabelVote
from UADContrastiveLib.preprocess.templates import ATLAS_FILE, ATLAS_TABLE_FILE, load_atlas
from UADContrastiveLib.resources import TEMPLATES

NAMES = AnatomyNames({1: ("CortCSF", []), 81: ("Frontal_WM_R", ["Frontal_R"]), 82: ("Frontal_WM_L", ["Frontal_L"]),
                      95: ("CorpCall", []), 59: ("ThalamusProper_R", ["Deep_WM_GM_R"])})
SHAPE = (30, 40, 40)  # (z, y, x), LPS, 2 mm: x index below 20 is the patient's right
SPACING = 2.0


def head() -> tuple[sitk.Image, np.ndarray]:
    """A grid with an LPS identity direction and its anatomy: right frontal white matter at
    x < 20, left at x >= 20, a cortical CSF rim, nothing outside the 'brain' box."""
    image = sitk.Image(SHAPE[::-1], sitk.sitkFloat32)
    image.SetSpacing([SPACING] * 3)
    image.SetOrigin((-39.0, -39.0, -29.0))
    anatomy = np.zeros(SHAPE, np.uint16)
    anatomy[2:28, 2:38, 2:20] = 81
    anatomy[2:28, 2:38, 20:38] = 82
    rim = np.zeros(SHAPE, bool)
    rim[2:28, 2:38, 2:38] = True
    rim[4:26, 4:36, 4:36] = False
    anatomy[rim] = 1
    return image, anatomy


def lesions() -> tuple[np.ndarray, np.ndarray]:
    """A large region deep in the right frontal white matter, a smaller one in the left."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:16, 12:18, 8:13] = 1     # 180 voxels, right
    mask[18:21, 20:23, 27:30] = 1    # 27 voxels, left
    anomaly = np.where(mask > 0, 3.0, 0.5).astype(np.float32)
    anomaly[12, 14, 10] = 9.0
    return mask, anomaly


def test_regions_named_sized_and_sorted_largest_first():
    image, anatomy = head()
    mask, anomaly = lesions()
    findings = describe_regions(anomaly, mask, anatomy, image, np.eye(4).tolist(), NAMES)
    assert [f["id"] for f in findings] == [1, 2]
    right, left = findings
    assert right["voxels"] == 180 and right["volume_ml"] == pytest.approx(180 * 8 / 1000)
    assert (right["hemisphere"], right["lobe"], right["location"]) == ("right", "frontal", "right frontal white matter")
    assert (left["hemisphere"], left["lobe"], left["location"]) == ("left", "frontal", "left frontal white matter")
    assert right["structures"] == [{"name": "Frontal_WM_R", "share": 1.0}]
    assert right["peak_score"] == 9.0 and right["mean_score"] == pytest.approx((179 * 3 + 9) / 180, abs=1e-3)
    # index (x, y, z) = (10, 14.5, 12.5) -> LPS = origin + 2 * index; RAS flips x and y
    assert right["centroid_ras_mm"] == [-(-39 + 20.0), -(-39 + 29.0), -29 + 25.0]
    assert right["centroid_template_mm"] == right["centroid_ras_mm"]  # identity to the template
    assert left["centroid_ras_mm"][0] < 0 < right["centroid_ras_mm"][0]  # RAS x grows towards the right
    assert not right["at_brain_edge"]
    assert list(right) == ["id", "volume_ml", "voxels", "peak_score", "mean_score", "centroid_ras_mm",
                           "centroid_template_mm", "hemisphere", "lobe", "location", "structures", "at_brain_edge"]
    json.dumps(findings)  # plain JSON types only


@pytest.mark.parametrize("orientation", ["RAS", "PSR", "SLA", "LPI"])
def test_the_same_head_in_another_orientation_gives_the_same_findings(orientation):
    """Permuted and flipped arrays with the direction changed to match: the anatomy is the same,
    so are the regions, their side and their RAS centroids."""
    image, anatomy = head()
    mask, anomaly = lesions()
    expected = describe_regions(anomaly, mask, anatomy, image, None, NAMES)

    def reoriented(array):
        return sitk.DICOMOrient(_on(image, array), orientation)

    moved = reoriented(anomaly)
    moved_array = sitk.GetArrayViewFromImage(moved)
    assert moved_array.shape != SHAPE or not np.array_equal(moved_array, anomaly)  # the layout did change
    found = describe_regions(*(sitk.GetArrayFromImage(reoriented(a)) for a in (anomaly, mask, anatomy)),
                             moved, None, NAMES)
    assert found == expected


def _on(reference: sitk.Image, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def test_a_region_across_the_midline_is_midline():
    image, anatomy = head()
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:14, 10:14, 16:24] = 1
    [finding] = describe_regions(mask.astype(np.float32), mask, anatomy, image, None, NAMES)
    assert finding["hemisphere"] == "midline" and finding["lobe"] == "frontal"
    assert finding["location"] == "frontal lobe, both sides"
    assert {s["name"] for s in finding["structures"]} == {"Frontal_WM_R", "Frontal_WM_L"}


def test_a_region_on_csf_takes_the_lobe_and_side_of_the_tissue_beside_it_and_lies_at_the_edge():
    image, anatomy = head()
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:14, 10:14, 2:4] = 1  # on the right side's CSF rim, against the edge of the labels
    [finding] = describe_regions(mask.astype(np.float32), mask, anatomy, image, None, NAMES)
    assert finding["structures"] == [{"name": "CortCSF", "share": 1.0}]
    assert (finding["hemisphere"], finding["lobe"], finding["at_brain_edge"]) == ("right", "frontal", True)


def test_without_anatomy_the_side_comes_from_the_template_coordinates():
    image, _ = head()
    mask, anomaly = lesions()
    right, left = describe_regions(anomaly, mask, None, image, np.eye(4).tolist())
    assert (right["hemisphere"], right["lobe"], right["structures"]) == ("right", None, [])
    assert left["location"] == "left hemisphere"
    assert describe_regions(anomaly, mask, None, image, None)[0]["hemisphere"] is None


def test_input_to_template_ras_inverts_the_preprocessing_transform():
    """Preprocessing's transform maps template LPS points to input points; 10 mm along LPS x
    (towards the left) means the input's RAS x is 10 mm less than the template's."""
    model_to_input = sitk.TranslationTransform(3, (10.0, 0.0, 0.0))
    matrix = np.asarray(input_to_template_ras(model_to_input))
    np.testing.assert_allclose(matrix @ [5.0, 2.0, 3.0, 1.0], [15.0, 2.0, 3.0, 1.0])
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.1, 0.05, 0, -0.02, 0.95, 0.1, 0, 0, 1.0))
    affine.SetCenter((4.0, -3.0, 7.0))
    affine.SetTranslation((1.0, 2.0, -3.0))
    matrix = np.asarray(input_to_template_ras(affine))
    template_lps = np.array([12.0, -8.0, 30.0])
    input_ras = np.asarray(affine.TransformPoint(tuple(template_lps))) * [-1, -1, 1]
    np.testing.assert_allclose((matrix @ np.append(input_ras, 1))[:3], template_lps * [-1, -1, 1], atol=1e-9)


def test_regions_are_26_connected():
    mask = np.zeros((5, 5, 5), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # corners touching
    mask[4, 4, 4] = mask[4, 4, 3] = mask[4, 3, 4] = 1
    regions = label_regions(mask)
    full = regions.full(mask.shape)
    assert regions.count == 2 and full[4, 4, 4] == 1 and full[1, 1, 1] == full[2, 2, 2] == 2
    assert label_regions(np.zeros((3, 3, 3))).count == 0


def test_the_table_a_reader_sees():
    image, anatomy = head()
    mask, anomaly = lesions()
    table = findings_table(describe_regions(anomaly, mask, anatomy, image, None, NAMES)).splitlines()
    assert table[0].split() == ["#1", "right", "frontal", "white", "matter", "1.44", "mL", "peak", "9.0"]
    assert table[1].startswith("#2") and "left frontal white matter" in table[1]
    assert findings_table([]) == "no anomalous region"
    many = findings_table(describe_regions(anomaly, mask, anatomy, image, None, NAMES), rows=1).splitlines()
    assert len(many) == 2 and many[1] == "... and 1 smaller region(s), all listed in report.json"


def test_overview_numbers_sit_on_their_region():
    regions = np.zeros((3, 20, 20), np.uint16)
    regions[1, 2:6, 10:14] = 1
    regions[1, 15:17, 3:5] = 2
    assert region_numbers(regions, 1) == [(1, 3.5, 11.5), (2, 15.5, 3.5)]
    assert region_numbers(regions, 0) == []


def test_label_vote_takes_the_majority_and_breaks_ties_to_the_smaller_label():
    vote = LabelVote((1, 1, 3), maps=3)
    for labels in ([81, 0, 5], [81, 7, 7], [82, 7, 9]):
        vote.add(np.array(labels, np.uint16).reshape(1, 1, 3))
    assert vote.result().ravel().tolist() == [81, 7, 5]


def test_shipped_table_reads_dlmuse_names_lobes_and_sides():
    atlas, names = load_atlas()
    labels = set(np.unique(sitk.GetArrayViewFromImage(atlas)).tolist()) - {0}
    assert set(names.table) == labels and len(labels) > 140
    assert (names[81].name, names[81].lobe, names[81].hemisphere) == ("Frontal_WM_R", "frontal", "right")
    assert (names[60].readable, names[60].lobe) == ("left thalamus", "deep grey matter")
    assert (names[102].lobe, names[35].lobe, names[95].hemisphere) == ("insula", "brainstem", "midline")
    assert names[1].tissue is False and names[46].readable == "unnamed DLMUSE label 46"
    assert atlas.GetPixelID() == sitk.sitkUInt16 and atlas.GetSize() == (96, 96, 80)


def test_a_changed_atlas_is_refused(tmp_path):
    for name in (ATLAS_FILE, ATLAS_TABLE_FILE):
        shutil.copy(TEMPLATES / name, tmp_path / name)
    table = json.loads((tmp_path / ATLAS_TABLE_FILE).read_text())
    table["sha256"] = "0" * 64
    (tmp_path / ATLAS_TABLE_FILE).write_text(json.dumps(table))
    with pytest.raises(ValueError, match="checksum"):
        load_atlas(tmp_path)
    (tmp_path / ATLAS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="uadc template"):
        load_atlas(tmp_path)
