"""One meaning per concept, end to end: the minimum size calibrated is the one detect uses,
a card's model grid is honoured, NaN/Inf voxels are reported, not silently zero-filled."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.preprocess.templates import ModelGrid


@pytest.fixture(scope="module")
def ixi_scan(shared_data):
    return sorted((shared_data / "ixi_t1" / "images").iterdir())[2]


def test_calibrated_minimum_size_is_the_one_detect_uses(ixi_scan, tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    (healthy / ixi_scan.name).symlink_to(ixi_scan)
    assert main(["calibrate", "--model", str(model), "--healthy", str(healthy), "--min-size", "100"]) == 0
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert card["thresholds"]["min_size_mm3"] == 100.0 and "min_size_mm3" not in card["postprocess"]
    assert main(["detect", str(ixi_scan), "--out-dir", str(tmp_path / "out"), "--model", str(model),
                 "--no-overview"]) == 0
    report = json.loads((tmp_path / "out" / ixi_scan.name[:-7] / "report.json").read_text(encoding="utf-8"))
    assert report["min_size_mm3"] == 100.0
    assert all(c["volume_ml"] * 1000 >= 100.0 - 1e-6 for c in report["components"])


def test_card_with_another_model_grid_is_honoured(ixi_scan, tiny_model, tmp_path):
    from UADContrastiveLib.detection.detector import Detector
    from UADContrastiveLib.io import read_volume, same_grid

    model = tmp_path / "coarse"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    grid = ModelGrid((64, 64, 48), 3.0, (0.0, 18.0, 8.0))
    card["model_grid"] = grid.to_dict()
    (model / "model.json").write_text(json.dumps(card), encoding="utf-8")
    detector = Detector(model, "cpu")
    image = read_volume(ixi_scan)
    detection = detector.run(image)
    assert sitk.GetArrayViewFromImage(detection.preprocessed.model_input).shape == (48, 64, 64)
    assert detection.preprocessed.model_input.GetSpacing() == (3.0, 3.0, 3.0)
    assert same_grid(detection.anomaly_map, image) and same_grid(detection.healthy, image)
    brain = sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0
    assert 900 < brain.sum() * np.prod(image.GetSpacing()) / 1000 < 2200  # a brain, not a misplaced box


def test_nan_and_inf_voxels_are_reported_for_nifti_and_nrrd(ixi_scan, tiny_model, tmp_path):
    """Decision: proceed (processed scans often have a NaN background), read them as 0, and say
    how many in report.json's warnings and on stderr."""
    image = sitk.ReadImage(str(ixi_scan), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array[:, :, :6] = np.nan  # a NaN background slab, outside the head
    array[0, 0, 6] = np.inf
    bad = int(np.count_nonzero(~np.isfinite(array)))
    corrupted = sitk.GetImageFromArray(array)
    corrupted.CopyInformation(image)
    inputs = [tmp_path / "nan_nifti.nii.gz", tmp_path / "nan_nrrd.nrrd"]
    for path in inputs:
        sitk.WriteImage(corrupted, str(path))
    result = subprocess.run([sys.executable, "-m", "UADContrastiveLib", "detect", *map(str, inputs), "--out-dir",
                             str(tmp_path / "out"), "--model", str(tiny_model), "--no-overview"],
                            capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for path, stem in zip(inputs, ("nan_nifti", "nan_nrrd")):
        report = json.loads((tmp_path / "out" / stem / "report.json").read_text(encoding="utf-8"))
        [warning] = [w for w in report["warnings"] if "NaN or infinite" in w]
        assert warning.startswith(f"{bad} NaN or infinite voxels") and "read as 0" in warning
        assert f"uadc: warning: {path}: {bad} NaN or infinite voxels" in result.stderr
        anomaly_map = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / stem / "anomaly_map.nii.gz")))
        assert np.isfinite(anomaly_map).all()
