"""T2 scans against T1 models and the IXI T2 heads as a user's own cohort, on the shared data:
the contrast named in the refusal, the carried brain masks on the T2 grid, the T2 template."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.io import read_mask, read_volume
from UADContrastiveLib.preprocess.checked import preprocess_checked
from UADContrastiveLib.preprocess.pipeline import preprocess
from UADContrastiveLib.preprocess.templates import T2_TEMPLATE, load_template, template_for_model
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.training.cohort import read_cohort
from UADContrastiveLib.training.ixi_t2_cohort import write_ixi_t2_folder
from UADContrastiveLib.zoo import ModelCard

HEAD = "IXI128-HH-1470"  # a tuning head of the T2 cohort's split


@pytest.fixture(scope="module")
def t2_folder(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ixi-t2")
    write_ixi_t2_folder(shared_data, out)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_a_t2_head_on_the_shipped_t1_model_is_told_to_choose_a_t2_model(shared_data, tiny_model, tmp_path, capsys):
    card = ModelCard.read(SHIPPED_MODELS / "contrastive-diffusion-t1")
    template = template_for_model(card.template, card.model_grid)
    t2 = shared_data / "ixi_t2" / "images" / f"{HEAD}_T2.nii.gz"
    with pytest.raises(Exception, match=r"this looks T2-weighted .*the model reads T1.*Choose a T2 model"):
        preprocess_checked(read_volume(t2), template, None, card.modality, str(t2))
    t1 = shared_data / "ixi_t1" / "images" / f"{HEAD}_T1.nii.gz"
    _, quality = preprocess_checked(read_volume(t1), template, None, card.modality, str(t1))
    assert quality["warnings"] == [] and quality["template_correlation"] > 0.8
    # the command line (the tiny model reads T1 on the same template): exit 2 with that message
    assert main(["detect", str(t2), "--out-dir", str(tmp_path), "--model", str(tiny_model), "--no-overview"]) == 2
    error = capsys.readouterr().err
    assert "this looks T2-weighted" in error and "does not look like a brain" not in error
    assert not (tmp_path / f"{HEAD}_T2").exists()


def test_carried_masks_lie_on_the_t2_grid_and_agree_with_the_t2_images_own_brain(t2_folder, shared_data):
    cohort = read_cohort(t2_folder)
    assert cohort.kind == "folder" and len(cohort.subjects) == 23
    assert all(s.brain_mask is not None and s.brain_mask.name == f"{s.id}_brain_mask.nii.gz" for s in cohort.subjects)
    scan = t2_folder / f"{HEAD}_T2.nii.gz"
    mask_file = nib.load(t2_folder / f"{HEAD}_T2_brain_mask.nii.gz")  # read back by another library
    image_file = nib.load(scan)
    assert mask_file.shape == image_file.shape and np.allclose(mask_file.affine, image_file.affine, atol=1e-3)
    carried = np.asarray(mask_file.dataobj) > 0
    assert set(np.unique(np.asarray(mask_file.dataobj))) == {0, 1}
    assert 1000 <= carried.sum() * np.prod(image_file.header.get_zooms()) / 1000 <= 1800  # mL, an adult brain
    # against the brain the detection path finds in the T2 image itself (T2 template, no mask)
    image = read_volume(scan)
    found = sitk.GetArrayFromImage(preprocess(image, load_template(name=T2_TEMPLATE)).brain_mask_input) > 0
    carried_sitk = sitk.GetArrayFromImage(read_mask(t2_folder / f"{HEAD}_T2_brain_mask.nii.gz", image)) > 0
    assert dice(found, carried_sitk) > 0.85
    # the T2 grid is rotated against the T1 grid: copying the T1 mask voxel by voxel is worse
    voxelwise = sitk.GetArrayFromImage(sitk.ReadImage(
        str(shared_data / "ixi_t1" / "brain_parcellation" / f"{HEAD}_T1_DLMUSE.nii.gz"))) > 0
    assert dice(found, voxelwise) < dice(found, carried_sitk) - 0.02


def test_the_t2_template_is_checksummed_and_a_t2_head_registers_better_to_it(shared_data, t2_folder):
    t2_template = load_template(name=T2_TEMPLATE)
    assert t2_template.modality == "T2" and t2_template.grid.matches(load_template().grid)
    image = read_volume(t2_folder / f"{HEAD}_T2.nii.gz")
    carried = sitk.GetArrayFromImage(read_mask(t2_folder / f"{HEAD}_T2_brain_mask.nii.gz", image)) > 0
    scores = {name: dice(sitk.GetArrayFromImage(preprocess(image, template).brain_mask_input) > 0, carried)
              for name, template in (("T1", load_template()), ("T2", t2_template))}
    assert scores["T2"] > 0.85 and scores["T2"] > scores["T1"] + 0.1, scores
