"""Reading and writing volumes: any format SimpleITK reads, DICOM series folders, atomic writes.

Every reader check raises InputError naming the file and the problem, before any
output is written, so a bad input never leaves half results behind.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

# Refuse a header whose voxel data would need more than this share of free memory.
MAX_MEMORY_SHARE = 0.5
MIN_VOXELS_PER_AXIS = 8
# NaN/Inf voxels (processed scans often carry a NaN background) are read as this value and
# counted in the image's metadata under NONFINITE_KEY; detection reports them as a warning.
NONFINITE_FILL = 0.0
NONFINITE_KEY = "UADC_nonfinite_voxels"
_UMASK = os.umask(0)
os.umask(_UMASK)


def available_memory_bytes() -> int:
    """Memory available to this process now (MemAvailable on Linux, physical size elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 8 * 1024**3


def _dicom_series_files(folder: Path) -> list[str]:
    # GDCM prints a raw ITK warning for a folder without series; our InputError says it better
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    if not series:
        raise InputError(folder, "is a folder without a readable DICOM series.",
                         "Point to an image file, or to a folder holding one DICOM series.")
    if len(series) > 1:
        largest = max(series, key=lambda s: len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s)))
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), largest))
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _check_header(path: Path, reader: sitk.ImageFileReader) -> tuple[int, ...]:
    """Validate dimensions and memory before the voxel data are read."""
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(path, "is not a readable image (truncated, corrupt, or not an image format SimpleITK knows).",
                         f"Details: {str(error).strip().splitlines()[-1][:200]}") from None
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) < 3 or (len(size) == 3 and min(size) == 1):
        raise InputError(path, f"is a 2D image (size {size}); a 3D brain volume is needed.")
    if len(size) == 4 and size[3] > 1:
        raise InputError(path, f"is a 4D series with {size[3]} volumes (size {size}).",
                         "Extract the volume you want (e.g. the T1) into its own file and run on that.")
    if len(size) > 4:
        raise InputError(path, f"has {len(size)} dimensions; a 3D volume is needed.")
    if min(size[:3]) == 0:
        raise InputError(path, "is empty (a dimension of size 0).")
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise InputError(path, f"has {components} components per voxel (colour or vector image); a scalar MRI is needed.")
    needed = int(np.prod(size, dtype=np.float64)) * 8  # read + float conversion
    if needed > MAX_MEMORY_SHARE * available_memory_bytes():
        raise InputError(path, f"declares {size} voxels, which would need {needed / 1024**3:.1f} GiB; "
                         f"this machine has {available_memory_bytes() / 1024**3:.1f} GiB free.",
                         "Downsample or crop the volume first.")
    return size


# NIfTI datatype codes of floating-point voxels (NaN/Inf are possible only there).
NIFTI_FLOAT_DTYPES = {16: "f4", 64: "f8"}


def _scan_nifti(path: Path, reader: sitk.ImageFileReader) -> int:
    """One pass over a NIfTI file's voxel data. Raises InputError when the file holds fewer bytes
    than its header promises (ITK zero-fills a truncated NIfTI silently); returns the number of
    NaN/Inf voxels (ITK's reader turns them into 0 without a word, so its image cannot tell).

    The layout comes from the header ITK has already read (`reader`, after
    ReadImageInformation): data offset, datatype, bits per voxel and dimensions; the byte order
    from the header's first field (348 or 540, the header's size, in the file's order)."""
    try:
        offset = int(float(reader.GetMetaData("vox_offset")))
        datatype, bitpix = int(reader.GetMetaData("datatype")), int(reader.GetMetaData("bitpix"))
        rank = int(reader.GetMetaData("dim[0]"))
        voxels = int(np.prod([int(reader.GetMetaData(f"dim[{i}]")) for i in range(1, rank + 1)], dtype=np.int64))
    except (RuntimeError, ValueError):  # a header ITK read without these fields: nothing to check against
        return 0
    expected = offset + voxels * bitpix // 8
    compressed = path.name.lower().endswith(".gz")
    if not compressed and datatype not in NIFTI_FLOAT_DTYPES:
        length, nonfinite = path.stat().st_size, 0
    else:
        try:
            with open(path, "rb") as raw:
                stream = _Gunzip(raw) if compressed else raw
                head = stream.read(4)
                order = "<" if int.from_bytes(head, "little") in (348, 540) else ">"
                dtype = np.dtype(order + NIFTI_FLOAT_DTYPES[datatype]) if datatype in NIFTI_FLOAT_DTYPES else None
                length, nonfinite = _stream_nonfinite(stream, offset, expected, dtype, first=head)
        except (EOFError, OSError, zlib.error) as error:
            raise InputError(path, f"is truncated or corrupt ({error}).") from None
    if length < expected:
        raise InputError(path, f"is truncated: the header promises {expected} bytes, the file holds {length}.",
                         "Copy or export the file again.")
    return nonfinite


class _Gunzip:
    """A gzip file's decompressed bytes, read(n) at a time through one zlib object.

    Python's gzip module inflates in 128 KB steps, each taking the GIL anew; beside the thread
    that imports torch (detect loads the model while it reads the input) every step waited
    for it: scanning a 1 mm volume took 0.10 s alone and 0.42 s beside the import. Here each
    read(n) is one call into zlib, which releases the GIL while it inflates."""

    def __init__(self, raw, chunk_bytes: int = 1 << 20):
        self.raw, self.chunk_bytes = raw, chunk_bytes
        self.inflater = zlib.decompressobj(wbits=31)  # 31: a gzip member, header and checksum
        self.pending = b""  # compressed bytes not yet inflated

    def read(self, size: int) -> bytes:
        parts, total = [], 0
        while total < size:
            if self.inflater.eof:  # a member ended: another may follow (concatenated gzip)
                rest = self.inflater.unused_data or self.raw.read(self.chunk_bytes)
                if not rest.strip(b"\0"):  # the end of the file, or zero padding after it
                    break
                self.inflater, self.pending = zlib.decompressobj(wbits=31), rest
            elif not self.pending:
                self.pending = self.raw.read(self.chunk_bytes)
                if not self.pending:
                    raise EOFError("the compressed data end before their end-of-stream marker")
            out = self.inflater.decompress(self.pending, size - total)
            # at a member's end zlib keeps what follows in unused_data (unconsumed_tail repeats it)
            self.pending = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            parts.append(out)
            total += len(out)
        return b"".join(parts)


def _stream_nonfinite(stream, start: int, end: int, dtype, chunk_bytes: int = 1 << 22,
                      first: bytes = b"") -> tuple[int, int]:
    """(bytes in the stream, NaN/Inf values of `dtype` between byte offsets start and end; 0
    without a dtype) of an open binary stream, read in 4 MB chunks so a large volume is never
    held twice in memory. first: bytes already read from the stream's start."""
    length, nonfinite, pending = 0, 0, b""
    for chunk in itertools.chain([first] if first else [], iter(lambda: stream.read(chunk_bytes), b"")):
        if dtype is not None and length + len(chunk) > start and length < end:
            data = pending + chunk[max(0, start - length): end - length]
            whole = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:whole], dtype=dtype)
            nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
            pending = data[whole:]
        length += len(chunk)
    return length, nonfinite


def read_volume(path: str | Path, allow_constant: bool = False) -> sitk.Image:
    """Read a 3D scalar volume as float32, squeezing a singleton 4th axis.

    NaN or Inf voxels are read as NONFINITE_FILL and counted (see _fill_nonfinite).
    Raises InputError for a missing path, unreadable file, 2D/true-4D/vector/empty data,
    a volume of only NaN/Inf, or a constant volume (unless `allow_constant`: for label images,
    where an all-zero mask is an answer, not an error).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist.", "Check the path and spelling.")
    nifti_nonfinite = 0  # NaN/Inf counted in a NIfTI file itself
    if path.is_dir():
        files = _dicom_series_files(path)
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        if reader.GetNumberOfComponents() != 1:
            raise InputError(path, "holds a colour/vector DICOM series; a scalar MRI is needed.")
        series_reader = sitk.ImageSeriesReader()
        series_reader.SetFileNames(files)
        try:
            image = series_reader.Execute()
        except RuntimeError as error:
            raise InputError(path, f"DICOM series could not be read: {str(error).strip().splitlines()[-1][:200]}") from None
        if image.GetDimension() != 3 or min(image.GetSize()) < 2:
            raise InputError(path, f"DICOM series has size {image.GetSize()}; a 3D volume is needed.")
    else:
        if path.stat().st_size == 0:
            raise InputError(path, "is an empty (zero-byte) file.")
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        size = _check_header(path, reader)
        if path.name.lower().endswith((".nii", ".nii.gz")):
            nifti_nonfinite = _scan_nifti(path, reader)
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(path, f"could not be read (truncated or corrupt?): {str(error).strip().splitlines()[-1][:200]}") from None
        if len(size) == 4:
            image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    image = _fill_nonfinite(path, sitk.Cast(image, sitk.sitkFloat32), nifti_nonfinite)
    check_voxels(path, image, allow_constant)
    return image


def _fill_nonfinite(path: Path, image: sitk.Image, in_file: int = 0) -> sitk.Image:
    """Replace NaN/Inf voxels by NONFINITE_FILL and record how many there were (NONFINITE_KEY);
    in_file: those counted in the file itself (a NIfTI's, which SimpleITK already zero-filled).

    Proceeding, not refusing: processed scans (skull-stripped, registered) often carry NaN
    where there is no signal, and those scans are valid input. A volume of nothing but
    NaN/Inf is refused."""
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    count = max(int(finite.size - np.count_nonzero(finite)), in_file)
    if count == 0:
        return image
    if count >= array.size:
        raise InputError(path, f"contains only NaN or infinite voxels ({count}); there is no image to analyse.")
    if not finite.all():  # (a NIfTI's were already filled by SimpleITK)
        image = image_like(np.where(finite, array, np.float32(NONFINITE_FILL)).astype(np.float32), image)
    image.SetMetaData(NONFINITE_KEY, str(count))
    return image


def nonfinite_warning(image: sitk.Image) -> list[str]:
    """The warning for an image read with NaN/Inf voxels (see _fill_nonfinite), or none."""
    if not image.HasMetaDataKey(NONFINITE_KEY):
        return []
    count = int(image.GetMetaData(NONFINITE_KEY))
    share = count / max(1, int(np.prod(image.GetSize())))
    return [f"{count} NaN or infinite voxels ({share:.2%} of the volume) were read as {NONFINITE_FILL:g}; "
            "outside the head that is harmless, inside the brain the map there is not meaningful"]


def check_voxels(path: str | Path, image: sitk.Image, allow_constant: bool = False) -> None:
    """Reject volumes whose voxel values cannot be a scan: constant, too small."""
    if min(image.GetSize()) < MIN_VOXELS_PER_AXIS:
        raise InputError(path, f"has size {image.GetSize()}; at least {MIN_VOXELS_PER_AXIS} voxels per axis are needed.")
    array = sitk.GetArrayViewFromImage(image)
    if not allow_constant and float(array.max()) == float(array.min()):
        raise InputError(path, f"is constant (every voxel is {float(array.min()):g}); there is no image to analyse.")


def read_mask(path: str | Path, reference: sitk.Image | None = None) -> sitk.Image:
    """Read a mask stored as 0/1, 0/255, labels or float probabilities; return uint8 0/1.

    With `reference`, the mask must lie on the same grid (a mask is never resampled silently).
    """
    path = Path(path)
    image = read_volume(path, allow_constant=True)
    array = sitk.GetArrayViewFromImage(image)
    top = float(array.max())
    mask = sitk.GetImageFromArray((array > (0.5 if top <= 1.0 else 0)).astype(np.uint8))
    mask.CopyInformation(image)
    if reference is not None and not same_grid(mask, reference):
        raise InputError(path, f"is on a different grid (size {mask.GetSize()}, spacing {np.round(mask.GetSpacing(), 3)}) "
                         f"than the image (size {reference.GetSize()}, spacing {np.round(reference.GetSpacing(), 3)}).",
                         "Give a mask on the same voxel grid as the image.")
    if not sitk.GetArrayViewFromImage(mask).any():
        raise InputError(path, "is an empty mask (no voxel > 0).")
    return mask


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A SimpleITK image of `array` (z, y, x) on the reference's grid."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


@contextlib.contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path beside `final`; rename it onto `final` only on success.

    The temporary name keeps the final extension so writers pick the right format; an
    exception, SIGINT or SIGTERM leaves no partial file under the final name.
    """
    final = Path(final)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results get the usual permissions
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_volume(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return path


def write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
