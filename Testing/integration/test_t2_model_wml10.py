"""The shipped T2 model through `uadc detect` on a patient's T2 with white-matter lesions (wml10:
skull-stripped, uint8, 0.94 x 0.94 x 3 mm with a singleton 4th axis), outputs read back by other
libraries and scored against the manual lesion mask.

The bounds are what the product promises of a T2 scan given to a T2 model, not the figures of one
set of weights: they hold for whichever weights ship under the name.
"""
from __future__ import annotations

import json

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from scipy import ndimage
from UADContrastiveLib.cli import main
from UADContrastiveLib.detection.detector import WIDESPREAD_FLAGGED_SHARE
from UADContrastiveLib.io import read_mask, read_volume, same_grid
from UADContrastiveLib.outputs.segmentation import ijk_to_lps
from UADContrastiveLib.zoo import read_card, resolve_model

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

MODEL = "contrastive-diffusion-t2"
SUBJECT = "302D10226-20040128"  # the wml10 subject with the most lesion volume (2993 voxels, 7.9 mL)
VOLUMES = ("healthy.nii.gz", "anomaly_map.nii.gz", "anomaly_mask.nii.gz", "brain_mask.nii.gz",
           "anatomy_labels.nii.gz")
# Voxels this close to a manual lesion are neither lesion nor lesion-free: the manual outline and
# the filtered map both blur the edge (3 mm: one slice of this scan).
LESION_MARGIN_MM = 3.0
# The reconstruction follows this scan's anatomy (ventricles, sulci, the brain's outline) rather
# than an average brain's: it correlates with the input inside the brain at least this much.
MIN_RECONSTRUCTION_CORRELATION = 0.5


@pytest.fixture(scope="module")
def detected(shared_data, tmp_path_factory):
    case = shared_data / "lesions" / "wml10" / SUBJECT
    scan = case / "t2.nii.gz"
    out = tmp_path_factory.mktemp("t2-wml10")
    assert main(["detect", str(scan), "--out-dir", str(out), "--model", MODEL]) == 0
    folder = out / "t2"
    image = read_volume(scan)
    lesion = sitk.GetArrayFromImage(read_mask(case / "lesion_mask.nii.gz", reference=image)) > 0
    brain = sitk.GetArrayFromImage(read_mask(case / "brain_mask.nii.gz", reference=image)) > 0
    spacing_zyx = image.GetSpacing()[::-1]
    near_lesion = ndimage.distance_transform_edt(~lesion, sampling=spacing_zyx) <= LESION_MARGIN_MM
    return {"scan": scan, "folder": folder, "image": image, "brain": brain, "lesion": lesion & brain,
            "lesion_free": brain & ~near_lesion,
            "map": sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_map.nii.gz"))),
            "mask": sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_mask.nii.gz"))) > 0}


def test_the_outputs_read_back_on_the_inputs_grid(detected):
    folder, image, scan = detected["folder"], detected["image"], detected["scan"]
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    card = read_card(resolve_model(MODEL))
    assert report["model"]["name"] == MODEL and report["model"]["version"] == card["version"]
    assert report["model"]["sha256"] == card["files"]
    assert not any("-weighted" in w for w in report["warnings"]), report["warnings"]  # a T2 for a T2 model
    original = nibabel.load(str(scan))
    assert original.shape[3:] == (1,)  # the awkward input: a singleton 4th axis
    for name in VOLUMES:
        written = sitk.ReadImage(str(folder / name))
        assert same_grid(written, image), name
        loaded = nibabel.load(str(folder / name))
        assert loaded.shape == original.shape[:3], name
        np.testing.assert_allclose(loaded.affine, original.affine, atol=1e-3, err_msg=name)
    segmentation = slicerio.read_segmentation(str(folder / "anomaly.seg.nrrd"))
    np.testing.assert_allclose(segmentation["ijkToLPS"], ijk_to_lps(image), atol=1e-6)
    segment = slicerio.extract_segments(segmentation, [("Anomaly", 1)])
    assert int((segment["voxels"] > 0).sum()) == int(detected["mask"].sum())
    assert (folder / "overview.png").stat().st_size > 0


def test_the_reconstruction_is_this_brain(detected):
    brain = detected["brain"]
    scan = sitk.GetArrayFromImage(detected["image"])[brain]
    healthy = sitk.GetArrayFromImage(sitk.ReadImage(str(detected["folder"] / "healthy.nii.gz")))
    correlation = np.corrcoef(scan, healthy[brain])[0, 1]
    # the same reconstruction against the scan turned front to back: the bound is about anatomy
    flipped = np.corrcoef(sitk.GetArrayFromImage(detected["image"])[:, ::-1][brain], healthy[brain])[0, 1]
    assert correlation >= MIN_RECONSTRUCTION_CORRELATION > flipped, (correlation, flipped)


def test_the_lesions_score_above_lesion_free_brain(detected):
    """The map and the mask find the manual lesions more than chance would: a lesion voxel scores
    higher, and is flagged more often, than a voxel of lesion-free brain."""
    lesion, free, amap, mask = detected["lesion"], detected["lesion_free"], detected["map"], detected["mask"]
    assert amap[lesion].mean() > amap[free].mean(), (amap[lesion].mean(), amap[free].mean())
    assert mask[lesion].mean() > mask[free].mean(), (mask[lesion].mean(), mask[free].mean())


@pytest.mark.xfail(strict=True, reason=(
    "contrastive-diffusion-t2 0.1.0 (period 4) flags 25.5 % of this scan's lesion-free brain (period 3: "
    "32.2 %, 21-35 % over the ten wml10 T2 scans), so detection itself warns that the scan differs from its training "
    "heads as a whole: the IXI T2 heads (whole heads, 3 T, 2 mm) do not teach it these skull-stripped "
    "3 mm scans; strict: this fails once the shipped model keeps lesion-free brain under the bound"))
def test_lesion_free_brain_is_not_flagged_wholesale(detected):
    """At most WIDESPREAD_FLAGGED_SHARE (5 %) of lesion-free brain flagged: above it detection
    warns that the flagged regions are no findings, and the output says nothing of the lesions."""
    share = detected["mask"][detected["lesion_free"]].mean()
    assert share <= WIDESPREAD_FLAGGED_SHARE, f"{100 * share:.1f} % of lesion-free brain flagged"
