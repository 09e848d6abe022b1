"""Reading volumes: formats, geometry, and a specific InputError for every bad input."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.errors import InputError
from UADContrastiveLib.io import (
    NONFINITE_FILL,
    NONFINITE_KEY,
    atomic_path,
    nonfinite_warning,
    read_mask,
    read_volume,
    same_grid,
    volume_stem,
    write_volume,
)


def make_image(shape_zyx=(20, 24, 28), spacing=(1.0, 1.2, 3.0), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray((rng.random(shape_zyx) * 200).astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 2.5))
    image.SetDirection((0, 0, -1, 1, 0, 0, 0, 1, 0))  # PSR, like IXI
    return image


@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_formats_round_trip_geometry_and_values(tmp_path, extension):
    image = make_image(dtype=np.uint8)
    path = tmp_path / f"scan{extension}"
    sitk.WriteImage(image, str(path))
    read = read_volume(path)
    assert read.GetPixelID() == sitk.sitkFloat32
    assert same_grid(read, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image).astype(np.float32))


def test_dicom_series_folder(tmp_path):
    image = sitk.Cast(make_image(spacing=(1.0, 1.0, 2.0)), sitk.sitkInt16)
    image.SetDirection(np.eye(3).ravel().tolist())
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        slice_.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        slice_.SetMetaData("0020|0013", str(k))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_.SetMetaData("0028|0030", "1\\1")
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(slice_)
    read = read_volume(folder)
    assert read.GetSize() == image.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), (1.0, 1.0, 2.0), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    assert volume_stem(folder) == "series"


def test_singleton_fourth_axis_is_squeezed(tmp_path):
    array = np.random.default_rng(1).random((1, 12, 14, 16)).astype(np.float32)
    image = sitk.GetImageFromArray(array, isVector=False)
    path = tmp_path / "four.nrrd"
    sitk.WriteImage(image, str(path))
    read = read_volume(path)
    assert read.GetDimension() == 3 and read.GetSize() == (16, 14, 12)


def test_stem_strips_compound_extensions(tmp_path):
    assert volume_stem("a/b/t1.nii.gz") == "t1"
    assert volume_stem("x.seg.nrrd") == "x"
    assert volume_stem("scan.mha") == "scan"


def expect_error(path, fragment):
    with pytest.raises(InputError) as info:
        read_volume(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    return info.value


def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.nii.gz", "does not exist")


def test_folder_without_series(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    expect_error(tmp_path, "without a readable DICOM series")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    expect_error(path, "zero-byte")


def test_text_file_with_nifti_extension(tmp_path):
    path = tmp_path / "fake.nii"
    path.write_text("this is not an image\n" * 20)
    expect_error(path, "not a readable image")


def test_truncated_file(tmp_path):
    good = tmp_path / "good.nii"
    sitk.WriteImage(make_image(), str(good))
    data = good.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(gzip.compress(data[: len(data) // 2]))
    expect_error(bad, "truncated")


def test_two_dimensional_image(tmp_path):
    path = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((30, 30), np.float32)), str(path))
    expect_error(path, "2D image")


def test_true_four_dimensional_series(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 10, 10, 10), np.float32), isVector=False), str(path))
    expect_error(path, "4D series with 3 volumes")


@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".nrrd"])
def test_nan_and_inf_voxels_are_counted_from_the_file_and_read_as_zero(tmp_path, extension):
    """Processed scans often carry a NaN background: read them, but say so. SimpleITK's NIfTI
    reader zero-fills NaN/Inf silently, so the count must come from the file itself."""
    array = sitk.GetArrayFromImage(make_image())
    bad = [(3, 4, 5), (1, 1, 1), (0, 0, 0)]
    for index, value in zip(bad, (np.nan, np.inf, -np.inf)):
        array[index] = value
    path = tmp_path / f"nan{extension}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    image = read_volume(path)
    read = sitk.GetArrayFromImage(image)
    assert np.isfinite(read).all()
    assert [float(read[index]) for index in bad] == [NONFINITE_FILL] * 3
    finite = np.isfinite(array)
    np.testing.assert_array_equal(read[finite], array[finite])
    assert image.GetMetaData(NONFINITE_KEY) == "3"
    [warning] = nonfinite_warning(image)
    assert warning.startswith("3 NaN or infinite voxels")
    assert nonfinite_warning(read_volume(_write(tmp_path / f"clean{extension}", make_image()))) == []


@pytest.mark.parametrize("extension", [".nii.gz", ".nrrd"])
def test_all_nan_volume_is_refused(tmp_path, extension):
    path = tmp_path / f"void{extension}"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((20, 20, 20), np.nan, np.float32)), str(path))
    expect_error(path, "only NaN or infinite voxels (8000)")


def _write(path, image):
    sitk.WriteImage(image, str(path))
    return path


def test_constant_volume(tmp_path):
    path = tmp_path / "zeros.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20, 20), np.float32)), str(path))
    expect_error(path, "is constant")


def test_header_too_large_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.nhdr"
    path.write_text("NRRD0004\ntype: float\nendian: little\ndimension: 3\nsizes: 5000 5000 5000\n"
                    "encoding: raw\ndata file: huge.raw\n")
    (tmp_path / "huge.raw").write_bytes(b"\0" * 16)
    expect_error(path, "would need")


def test_masks_in_any_storage_become_zero_one(tmp_path):
    image = make_image()
    base = np.zeros(sitk.GetArrayFromImage(image).shape, np.float32)
    base[5:10, 5:10, 5:10] = 1
    for scale, name in [(1, "01"), (255, "0255"), (0.9, "float")]:
        mask = sitk.GetImageFromArray(base * scale)
        mask.CopyInformation(image)
        path = tmp_path / f"mask_{name}.nii.gz"
        sitk.WriteImage(mask, str(path))
        read = sitk.GetArrayFromImage(read_mask(path, image))
        assert read.dtype == np.uint8 and int(read.sum()) == 125


def test_mask_on_another_grid_is_refused(tmp_path):
    image = make_image()
    other = make_image(shape_zyx=(10, 10, 10))
    path = tmp_path / "mask.nii.gz"
    sitk.WriteImage(sitk.Cast(other > 100, sitk.sitkUInt8), str(path))
    with pytest.raises(InputError, match="different grid"):
        read_mask(path, image)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_volume(make_image(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


@pytest.mark.parametrize("chunk_bytes", [7, 1000, 1 << 22])
def test_nonfinite_count_streamed_in_chunks_matches_nibabel(tmp_path, chunk_bytes):
    """The NIfTI scan counts NaN/Inf in chunks that cut voxels and the header anywhere."""
    import gzip

    import nibabel
    from UADContrastiveLib.io import _stream_nonfinite

    array = np.random.default_rng(0).normal(size=(9, 11, 13)).astype(">f4")
    array[np.random.default_rng(1).random(array.shape) < 0.1] = np.nan
    array[0, 0, :3] = [np.inf, -np.inf, np.nan]
    path = tmp_path / "big_endian.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)
    voxels = nibabel.load(path).dataobj
    end = voxels.offset + array.size * 4
    with gzip.open(path, "rb") as stream:
        length, count = _stream_nonfinite(stream, voxels.offset, end, np.dtype(voxels.dtype), chunk_bytes)
    assert count == int(np.count_nonzero(~np.isfinite(array)))
    assert length >= end


def test_a_nifti_short_by_a_few_bytes_is_truncated(tmp_path):
    good = tmp_path / "good.nii"
    sitk.WriteImage(make_image(), str(good))
    bad = tmp_path / "short.nii.gz"
    bad.write_bytes(gzip.compress(good.read_bytes()[:-8]))
    expect_error(bad, "truncated")


def test_gunzip_reads_what_gzip_does_across_members_and_read_sizes(tmp_path):
    from UADContrastiveLib.io import _Gunzip

    payload = np.random.default_rng(2).integers(0, 4, 300_000, dtype=np.uint8).tobytes()
    path = tmp_path / "two_members.gz"
    path.write_bytes(gzip.compress(payload[:100_000]) + gzip.compress(payload[100_000:]) + b"\0" * 8)
    for read_size, chunk_bytes in ((7, 11), (65_536, 1 << 20), (1 << 22, 1000)):
        with open(path, "rb") as raw:
            stream, parts = _Gunzip(raw, chunk_bytes), []
            while part := stream.read(read_size):
                assert len(part) <= read_size
                parts.append(part)
        assert b"".join(parts) == payload


def test_big_endian_nifti_nan_count_and_a_corrupt_gzip(tmp_path):
    """The byte order comes from the header's own size field; a corrupt stream is refused."""
    import nibabel

    array = np.random.default_rng(0).normal(size=(12, 11, 10)).astype(">f4")
    array[array > 1.5] = np.nan
    path = tmp_path / "big_endian.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)
    image = read_volume(path)
    assert image.GetMetaData(NONFINITE_KEY) == str(int(np.isnan(array).sum())) != "0"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(bytes(data))
    expect_error(corrupt, "corrupt")
