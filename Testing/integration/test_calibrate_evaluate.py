"""`uadc calibrate` (statistics on unseen healthy scans, thresholds on further ones) then `uadc evaluate`:
thresholds from healthy scans hold on those scans."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main


@pytest.fixture(scope="module")
def calibrated(shared_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    model = root / "model"
    shutil.copytree(tiny_model, model)
    images = sorted((shared_data / "ixi_t1" / "images").iterdir())
    folders = {"statistics": images[4:8], "healthy": images[2:4]}
    for name, scans in folders.items():
        (root / name).mkdir()
        for scan in scans:
            (root / name / scan.name).symlink_to(scan)
    assert main(["calibrate", "--model", str(model), "--statistics", str(root / "statistics"),
                 "--healthy", str(root / "healthy"), "--min-size", "0"]) == 0
    return model, folders["healthy"], root


def test_card_holds_ordered_thresholds(calibrated):
    model, scans, root = calibrated
    thresholds = json.loads((model / "model.json").read_text(encoding="utf-8"))["thresholds"]
    values = thresholds["values"]
    assert values["fpr_1%"] < values["fpr_0.5%"] < values["fpr_0.1%"]
    assert thresholds["default"] == "fpr_0.5%"
    assert thresholds["healthy_scans"] == [s.name for s in scans]  # --healthy ran last: thresholds from it
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert "healthy_statistics.npz" in card["files"] and "residual_stats.npz" not in card["files"]
    assert card["postprocess"]["polarity"] == "absolute" and card["postprocess"]["normalise_percentile"] is None
    assert card["healthy_statistics"]["scans"] == [s.name[: -len(".nii.gz")] for s in
                                                   sorted((root / "statistics").iterdir())]
    assert main(["models", "verify", "--model", str(model)]) == 0  # the card lists the new file's sha256


def test_flagged_fraction_on_the_calibration_scans(calibrated):
    model, scans, root = calibrated
    empty_masks = []
    for scan in scans:
        image = sitk.ReadImage(str(scan))
        empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        empty.CopyInformation(image)
        path = root / f"{scan.name[:-7]}_empty.nii.gz"
        sitk.WriteImage(empty, str(path))
        empty_masks.append(path)
    cases = root / "healthy.csv"
    with cases.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "lesion_mask", "dataset"])
        for scan, mask in zip(scans, empty_masks):
            writer.writerow([scan.name, scan, mask, "ixi_healthy"])
    out = root / "evaluation"
    threshold = json.loads((model / "model.json").read_text(encoding="utf-8"))["thresholds"]["values"]["fpr_1%"]
    assert main(["evaluate", "--model", str(model), "--cases", str(cases), "--out-dir", str(out),
                 "--threshold", str(threshold), "--min-size", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    fractions = [case["fp_fraction"] for case in metrics["cases"]]
    # pooled over both scans exactly 1 % is flagged; the two brains are of similar size
    assert 0.005 < np.mean(fractions) < 0.015, fractions
    assert (out / "report.md").exists() and (out / "metrics.csv").exists()
