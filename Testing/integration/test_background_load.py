"""Loading the model in a thread while the input registers changes nothing but time."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.detection.detector import Detector
from UADContrastiveLib.io import read_volume


@pytest.fixture(scope="module")
def ixi_scan(shared_data):
    return sorted((shared_data / "ixi_t1" / "images").glob("*_T1.nii.gz"))[0]


def test_background_load_gives_the_same_detection(ixi_scan, tiny_model):
    image = read_volume(ixi_scan)
    plain = Detector(tiny_model, "cpu").run(image)
    overlapped = Detector(tiny_model, "cpu", background=True).run(image)
    scale = float(np.ptp(sitk.GetArrayViewFromImage(image)))
    for name in ("healthy", "anomaly_map"):
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(getattr(overlapped, name)),
                                   sitk.GetArrayViewFromImage(getattr(plain, name)), atol=1e-5 * scale)
    assert plain.quality.keys() == overlapped.quality.keys()


def test_a_model_that_fails_to_load_ends_the_run_with_exit_2(ixi_scan, tiny_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    with open(broken / "unet.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    out = tmp_path / "out"
    assert main(["detect", str(ixi_scan), str(ixi_scan.with_name("missing.nii.gz")), "--out-dir", str(out),
                 "--model", str(broken)]) == 2
    error = capsys.readouterr().err
    assert "unet.pt" in error and "checksum" in error
    assert not any(p.is_dir() for p in out.iterdir())  # nothing written for any input
