"""User paths of the command line beyond a plain `detect`: a given brain mask, the uncertainty
map, a DICOM series folder as input, and rebuilding the template. Real IXI heads throughout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.io import read_volume, same_grid
from UADContrastiveLib.outputs import names


@pytest.fixture(scope="module")
def ixi_head(shared_data):
    """An IXI T1 head and its DLMUSE parcellation (any label > 0 is brain)."""
    image = sorted((shared_data / "ixi_t1" / "images").iterdir())[2]
    parcellation = shared_data / "ixi_t1" / "brain_parcellation" / image.name.replace(".nii.gz", "_DLMUSE.nii.gz")
    return image, parcellation


@pytest.fixture(scope="module")
def responsive_model(tmp_path_factory):
    """A tiny model whose reconstructions vary with the noise (see make_tiny_model)."""
    from tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-responsive", responsive=True)


def array(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def detect(*args) -> None:
    assert main(["detect", *map(str, args), "--no-overview"]) == 0


def test_detect_with_a_given_brain_mask_uses_it_voxel_for_voxel(ixi_head, tiny_model, tmp_path):
    image, parcellation = ixi_head
    given = (array(parcellation) > 0).astype(np.uint8)
    mask_path = tmp_path / "brain.nii.gz"
    mask = sitk.GetImageFromArray(given)
    mask.CopyInformation(read_volume(image))
    sitk.WriteImage(mask, str(mask_path))
    detect(image, "--out-dir", tmp_path / "out", "--model", tiny_model, "--brain-mask", mask_path)
    folder = tmp_path / "out" / image.name[: -len(".nii.gz")]
    np.testing.assert_array_equal(array(folder / names.BRAIN_MASK), given)
    amap = array(folder / names.ANOMALY_MAP)
    assert np.all(amap[given == 0] == 0) and np.count_nonzero(amap[given > 0]) > 0.9 * given.sum()
    report = json.loads((folder / names.REPORT).read_text(encoding="utf-8"))
    assert report["brain"]["source"] == "given"
    assert report["brain"]["volume_ml"] == pytest.approx(given.sum() * 8 / 1000, rel=0.02)  # 2 mm voxels


def test_detect_with_uncertainty_writes_a_spread_inside_the_brain(ixi_head, responsive_model, tmp_path):
    image, _ = ixi_head
    detect(image, "--out-dir", tmp_path, "--model", responsive_model, "--uncertainty", "--samples", "2")
    folder = tmp_path / image.name[: -len(".nii.gz")]
    uncertainty = sitk.ReadImage(str(folder / names.UNCERTAINTY))
    assert same_grid(uncertainty, read_volume(image))
    assert uncertainty.GetPixelID() == sitk.sitkFloat32
    spread = sitk.GetArrayFromImage(uncertainty)
    brain = array(folder / names.BRAIN_MASK) > 0
    assert np.all(spread >= 0) and np.all(spread[~brain] == 0)
    # two stochastic reconstructions of a random network disagree almost everywhere in the brain
    assert np.count_nonzero(spread[brain]) > 0.5 * brain.sum()


def write_dicom_series(image: sitk.Image, folder) -> None:
    """`image` as one DICOM file per slice along its third axis, with the position, orientation
    and spacing a reader needs to rebuild the volume."""
    folder.mkdir()
    stored = sitk.GetImageFromArray(np.rint(sitk.GetArrayFromImage(image)).astype(np.int16))  # DICOM stores integers
    stored.CopyInformation(image)
    image = stored
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        slice_.SetMetaData("0008|0060", "MR")
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.2")
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0037", orientation)
        slice_.SetMetaData("0020|0013", str(k + 1))
        slice_.SetMetaData("0018|0050", f"{image.GetSpacing()[2]:.6f}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)


def test_detect_on_a_dicom_folder(ixi_head, tiny_model, tmp_path):
    image_path, _ = ixi_head
    original = read_volume(image_path)
    series = tmp_path / "head-series"
    write_dicom_series(original, series)
    read = read_volume(series)
    # IXI's grid is left-handed; a DICOM stack runs along the slices' normal, so the reader
    # rebuilds the same head with the slice order reversed
    last = original.GetDepth() - 1
    np.testing.assert_allclose(read.GetOrigin(), original.TransformIndexToPhysicalPoint((0, 0, last)), atol=1e-3)
    np.testing.assert_allclose(read.GetSpacing(), original.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(original)[::-1], atol=0.5)
    detect(series, "--out-dir", tmp_path / "out", "--model", tiny_model)
    folder = tmp_path / "out" / "head-series"  # named after the folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [names.HEALTHY, names.ANOMALY_MAP, names.ANOMALY_MASK, names.SEGMENTATION, names.BRAIN_MASK, names.ANATOMY,
         names.REPORT])
    for name in (names.HEALTHY, names.ANOMALY_MAP, names.BRAIN_MASK):
        assert same_grid(sitk.ReadImage(str(folder / name)), read), name
    report = json.loads((folder / names.REPORT).read_text(encoding="utf-8"))
    assert report["input"] == str(series)
    assert 900 < report["brain"]["volume_ml"] < 2000


def test_template_rebuilt_from_a_few_heads_resembles_the_shipped_one(shared_data, tmp_path):
    from UADContrastiveLib.preprocess.templates import BRAIN_PROBABILITY_FILE, HEAD_FILE, ModelGrid
    from UADContrastiveLib.resources import TEMPLATES

    assert main(["template", "--data", str(shared_data / "ixi_t1"), "--count", "3", "--out", str(tmp_path)]) == 0
    grid = ModelGrid().reference()
    for name in (HEAD_FILE, BRAIN_PROBABILITY_FILE):
        built = read_volume(tmp_path / name)
        assert same_grid(built, grid), name
        shipped = sitk.GetArrayFromImage(read_volume(TEMPLATES / name)).ravel()
        assert np.corrcoef(sitk.GetArrayFromImage(built).ravel(), shipped)[0, 1] > 0.9, name
    built = array(tmp_path / BRAIN_PROBABILITY_FILE)
    shipped = array(TEMPLATES / BRAIN_PROBABILITY_FILE)
    # three heads: each voxel's value is 0, 1/3, 2/3 or 1 of the brain (x 255, rounded)
    assert set(np.unique(built)) <= {0, 85, 170, 255}
    # where the shipped template's 40 heads all have brain, these three do too; where none of the
    # 40 has brain, neither do these three
    all_three, all_forty, any_of_forty = built == 255, shipped == 255, shipped > 0
    assert np.count_nonzero(all_three & all_forty) > 0.95 * np.count_nonzero(all_forty)
    assert np.count_nonzero(all_three & ~any_of_forty) < 0.01 * np.count_nonzero(all_three)
