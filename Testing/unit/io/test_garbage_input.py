"""Random bytes under image names never crash the reader with anything but InputError."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from UADContrastiveLib.errors import InputError
from UADContrastiveLib.io import read_volume

EXTENSIONS = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm"]
HEADERS = [b"", b"NRRD0004\n", b"ObjectType = Image\nNDims = 3\n", b"\x5c\x01\x00\x00", b"\x1f\x8b\x08\x00"]


@settings(max_examples=60, deadline=None)
@given(prefix=st.sampled_from(HEADERS), body=st.binary(max_size=2048), extension=st.sampled_from(EXTENSIONS))
def test_garbage_bytes_give_input_error(prefix, body, extension):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"garbage{extension}"
        path.write_bytes(prefix + body)
        try:
            read_volume(path)
        except InputError as error:
            assert str(path) in str(error)
        else:
            raise AssertionError("garbage was accepted as a volume")
