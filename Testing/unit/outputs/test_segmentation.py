"""Writing .seg.nrrd (read back by slicerio, SimpleITK and Slicer's own MRML storage node)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from slicer_reading import read_with_slicer
from UADContrastiveLib.outputs import segmentation as segmentation_module
from UADContrastiveLib.outputs.segment import SEGMENT_COLOR, TERMINOLOGY
from UADContrastiveLib.outputs.segmentation import ijk_to_lps, write_segmentation


def oblique_mask(empty: bool = False) -> sitk.Image:
    """A mask on an anisotropic, permuted (PSR-like) grid with a non-trivial origin."""
    array = np.zeros((12, 14, 16), np.uint8)  # z, y, x
    if not empty:
        array[2:5, 3:7, 4:9] = 1      # 60 voxels
        array[9, 10, 12] = 1          # +1 separate voxel
    mask = sitk.GetImageFromArray(array)
    mask.SetSpacing((0.9375, 1.2, 3.0))
    mask.SetOrigin((-10.123456789, 20.5, 33.333333333))
    mask.SetDirection((0, 0, -1, 1, 0, 0, 0, 1, 0))
    return mask


def assert_same_geometry(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-12)


def test_seg_nrrd_round_trip_with_slicerio_and_simpleitk(tmp_path):
    mask = oblique_mask()
    path = write_segmentation(mask, tmp_path / "case.seg.nrrd")
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["case.seg.nrrd"]  # no temporary left
    read = slicerio.read_segmentation(str(path))
    assert slicerio.segment_names(read) == ["Anomaly"]
    segment = read["segments"][0]
    assert segment["color"] == pytest.approx(list(SEGMENT_COLOR))
    assert segment["terminology"]["type"] == list(TERMINOLOGY["type"])
    assert segment["terminology"]["category"] == ["SCT", "49755003", "Morphologically Altered Structure"]
    voxels = slicerio.segment_mask(read, "Anomaly")  # (i, j, k)
    assert int(voxels.sum()) == 61
    np.testing.assert_array_equal(voxels.transpose(2, 1, 0), sitk.GetArrayFromImage(mask) > 0)
    np.testing.assert_allclose(read["ijkToLPS"], ijk_to_lps(mask), rtol=0, atol=1e-12)
    back = sitk.ReadImage(str(path))
    assert_same_geometry(back, mask)
    assert int(sitk.GetArrayViewFromImage(back).sum()) == 61


def test_empty_mask_gives_valid_empty_segment(tmp_path):
    path = write_segmentation(oblique_mask(empty=True), tmp_path / "empty.seg.nrrd")
    read = slicerio.read_segmentation(str(path))
    assert slicerio.segment_names(read) == ["Anomaly"]
    assert not slicerio.segment_mask(read, "Anomaly").any()
    assert_same_geometry(sitk.ReadImage(str(path)), oblique_mask())


@pytest.mark.parametrize("empty", [False, True])
def test_slicer_mrml_storage_node_reads_it(tmp_path, empty):
    path = write_segmentation(oblique_mask(empty), tmp_path / "case.seg.nrrd")
    segments = read_with_slicer(path)
    assert len(segments) == 1
    assert segments[0]["name"] == "Anomaly"
    assert segments[0]["voxels"] == (0 if empty else 61)
    assert segments[0]["color"] == pytest.approx(SEGMENT_COLOR)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(path, segmentation, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"NRRD0005\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(segmentation_module.slicerio, "write_segmentation", broken)
    with pytest.raises(OSError):
        write_segmentation(oblique_mask(), tmp_path / "case.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_rejects_non_3d_masks(tmp_path):
    with pytest.raises(ValueError, match="3D"):
        write_segmentation(sitk.Image([4, 4], sitk.sitkUInt8), tmp_path / "flat.seg.nrrd")
