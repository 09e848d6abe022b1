"""Shared fixtures. Tests that need ../shared/data skip on a user's fresh clone and fail under CI."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("UADC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skip (or fail, when CI is set) if it is absent."""
    if not (SHARED_DATA / "ixi_t1").is_dir():
        message = f"../shared/data not found at {SHARED_DATA} (set UADC_SHARED_DATA to its path)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the real-data tests")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _limit_threads():
    """Two cores on the development machines: keep torch from oversubscribing them."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised, checksum-valid model folder (fast; its maps mean nothing)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-test")
