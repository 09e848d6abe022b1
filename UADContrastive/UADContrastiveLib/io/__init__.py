"""Reading and writing volumes (`volumes`: any format SimpleITK reads, DICOM series folders,
atomic writes) and the names of input files (`paths`: image extensions, an input's stem).

`paths` is standard library only and imported here; `volumes` (numpy, SimpleITK) is imported
on first use of one of its names, so `uadc detect` checks its inputs' names and output folders
and starts loading the model before those imports (0.3 s) run beside the load.
"""
import importlib

from .paths import IMAGE_EXTENSIONS, volume_stem

__all__ = ["IMAGE_EXTENSIONS", "volume_stem"]


def __getattr__(name: str):
    """A name of `volumes` (imported on first use), e.g. `from UADContrastiveLib.io import read_volume`."""
    return getattr(importlib.import_module(f"{__name__}.volumes"), name)
