"""Names of input files: the image extensions we read and an input's stem. Standard library
only, so `uadc detect` can check its inputs' output folders before importing numpy and SimpleITK."""
from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", ".dcm")


def volume_stem(path: str | Path) -> str:
    """Name without image extension (`t1` for `t1.nii.gz`); a DICOM folder's own name: the
    <stem> of an input's output folder."""
    path = Path(path)
    name = path.name
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem if path.is_file() else name
