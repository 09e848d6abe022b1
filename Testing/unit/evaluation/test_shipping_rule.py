"""The shipping rule's checks on maps whose flagged shares are known."""
from __future__ import annotations

import numpy as np
from UADContrastiveLib.evaluation.shipping_rule import (
    FACTOR,
    TARGET,
    HeadMap,
    auprc_not_below,
    shipped_threshold,
    split_half_transfer,
    verdict,
)

SHAPE = (20, 20, 20)


def head(name: str, scale: float, seed: int) -> HeadMap:
    """A head whose map is uniform noise times `scale`: a larger scale flags more at one threshold."""
    rng = np.random.default_rng(seed)
    return HeadMap(name, (scale * rng.random(SHAPE)).astype(np.float32), np.ones(SHAPE, bool), (2.0, 2.0, 2.0))


def test_heads_alike_pass_the_split_half_transfer():
    heads = [head(f"h{i}", 1.0, i) for i in range(8)]
    check = split_half_transfer(heads, 0.0)
    assert check.passed, check.figures


def test_one_head_unlike_the_others_fails_it():
    """A head whose map is 10 % larger is flagged far above the target by the other half's threshold."""
    heads = [head(f"h{i}", 1.0, i) for i in range(8)] + [head("odd", 1.1, 99)]
    check = split_half_transfer(heads, 0.0)
    assert not check.passed and "worst odd" in check.figures


def test_the_models_own_threshold_on_every_head():
    heads = [head(f"h{i}", 1.0, i) for i in range(4)]
    at_target = 1.0 - TARGET  # uniform noise: this share of each brain lies above
    assert shipped_threshold(heads, at_target, 0.0, "tuning head").passed
    too_low = 1.0 - 1.5 * FACTOR * TARGET
    failed = shipped_threshold(heads, too_low, 0.0, "tuning head")
    assert not failed.passed and "limit 1.00 %" in failed.figures


def test_auprc_against_the_shipped_version():
    assert auprc_not_below(0.40, 0.35, "m 0.2").passed
    assert not auprc_not_below(0.30, 0.35, "m 0.2").passed
    assert auprc_not_below(0.3298, 0.3302, "m 0.2").passed  # equal at the reported precision
    assert not auprc_not_below(0.3290, 0.3302, "m 0.2").passed
    assert auprc_not_below(0.30, None, "m 0.2").passed  # nothing recorded to compare with
    assert not auprc_not_below(None, 0.35, "m 0.2").passed


def test_the_verdict_needs_every_check():
    heads = [head(f"h{i}", 1.0, i) for i in range(4)]
    good = shipped_threshold(heads, 1.0 - TARGET, 0.0, "tuning head")
    bad = auprc_not_below(0.1, 0.3, "m 0.2")
    assert verdict("m 0.3", [good])["ships"]
    result = verdict("m 0.3", [good, bad])
    assert not result["ships"] and "FAILS" in result["text"] and "[FAIL] tuning AUPRC" in result["text"]


def test_skull_stripped_twins_of_cohort_heads_are_written_into_a_new_folder(tmp_path):
    """The T2 shipping rule's twins: each head times its cohort-folder mask, in a folder that
    did not exist yet; read back with nibabel, the brain keeps its values and the rest is 0."""
    import nibabel as nib
    import SimpleITK as sitk
    from UADContrastiveLib.evaluation.shipping_rule import cohort_folder_brain, skull_stripped_twins

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    rng = np.random.default_rng(0)
    head_array = (1 + rng.random((12, 14, 16))).astype(np.float32)
    brain = np.zeros(head_array.shape, np.uint8)
    brain[3:9, 4:10, 5:11] = 1
    image = sitk.GetImageFromArray(head_array)
    image.SetSpacing((2.0, 2.0, 2.0))
    mask = sitk.GetImageFromArray(brain)
    mask.CopyInformation(image)
    sitk.WriteImage(image, str(cohort / "IXI001-HH-0001_T2.nii.gz"))
    sitk.WriteImage(mask, str(cohort / "IXI001-HH-0001_T2_brain_mask.nii.gz"))
    cases = [{"id": "IXI001-HH-0001_T2", "image": cohort / "IXI001-HH-0001_T2.nii.gz"}]

    twins = skull_stripped_twins(cases, cohort_folder_brain(cohort), tmp_path / "sets" / "skull_stripped")

    assert [t["id"] for t in twins] == ["IXI001-HH-0001_T2 skull-stripped"]
    stripped = np.asarray(nib.load(str(twins[0]["image"])).dataobj).transpose(2, 1, 0)
    assert np.allclose(stripped[brain > 0], head_array[brain > 0])
    assert int((stripped != 0).sum()) == int(brain.sum()) == 216
    assert list((tmp_path / "sets" / "skull_stripped").iterdir()) == [twins[0]["image"]]
