"""A model of another contrast than T1: brain-like inputs of any contrast pass, noise is still
refused, and an input of the wrong contrast is warned about in the report."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.zoo import ModelCard


@pytest.fixture(scope="module")
def flair_model(tiny_model, tmp_path_factory):
    model = tmp_path_factory.mktemp("flair") / "tiny-flair"
    shutil.copytree(tiny_model, model)
    card = ModelCard.read(model)
    card.modality = "FLAIR"  # the card's modality is not a checksummed file
    card.write()
    return model


def test_noise_is_refused_by_a_flair_model(flair_model, tmp_path, capsys):
    noise = sitk.GetImageFromArray((np.random.default_rng(0).random((100, 120, 110)) * 100).astype(np.float32))
    noise.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(noise, str(tmp_path / "noise.nii.gz"))
    assert main(["detect", str(tmp_path / "noise.nii.gz"), "--out-dir", str(tmp_path / "out"),
                 "--model", str(flair_model)]) == 2
    assert "does not look like a brain" in capsys.readouterr().err


def test_a_t2_scan_on_a_flair_model_is_analysed_with_a_warning(shared_data, flair_model, tmp_path):
    case = shared_data / "lesions" / "wml10" / "301D00252-20040121"
    assert main(["detect", str(case / "t2.nii.gz"), "--out-dir", str(tmp_path), "--model", str(flair_model),
                 "--no-overview"]) == 0
    report = json.loads((tmp_path / "t2" / "report.json").read_text(encoding="utf-8"))
    assert any(w.startswith("this looks T2-weighted") and "the model reads FLAIR" in w for w in report["warnings"])
