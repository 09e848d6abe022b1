"""The shipped default model on unseen healthy heads: the calibrated threshold means the same on
every scan, whole head or skull-stripped (the scores are healthy-relative, never rescaled per scan)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.datasets import ixi_subjects, split
from UADContrastiveLib.evaluation.real_lesions import validation_part
from UADContrastiveLib.zoo import DEFAULT_MODEL, read_card, resolve_model

LIMIT = 0.01  # twice the default preset's 0.5 %


@pytest.fixture(scope="module")
def tuning_head(shared_data):
    _, validation = split(ixi_subjects(shared_data / "ixi_t1"))
    return next(s for s in validation if validation_part(s.id) == "tuning")


def flagged_share(folder) -> float:
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_mask.nii.gz"))) > 0
    flagged = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_mask.nii.gz"))) > 0
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    card = read_card(resolve_model(DEFAULT_MODEL))
    assert report["threshold"]["value"] == pytest.approx(card["thresholds"]["values"]["fpr_0.5%"])
    return float(flagged[brain].mean())


@pytest.mark.slow
def test_a_healthy_tuning_head_and_its_skull_stripped_twin_are_flagged_at_most_one_percent(tuning_head, tmp_path):
    image = sitk.ReadImage(str(tuning_head.image))
    brain = sitk.ReadImage(str(tuning_head.brain_mask))
    stripped = sitk.GetArrayFromImage(image) * (sitk.GetArrayFromImage(brain) > 0)
    twin = sitk.GetImageFromArray(stripped.astype(np.float32))
    twin.CopyInformation(image)
    twin_path = tmp_path / f"{tuning_head.id}_stripped.nii.gz"
    sitk.WriteImage(twin, str(twin_path))
    out = tmp_path / "out"
    assert main(["detect", str(tuning_head.image), str(twin_path), "--out-dir", str(out)]) == 0
    whole = flagged_share(out / tuning_head.image.name.replace(".nii.gz", ""))
    skull_stripped = flagged_share(out / twin_path.name.replace(".nii.gz", ""))
    assert whole <= LIMIT, whole
    assert skull_stripped <= LIMIT, skull_stripped
