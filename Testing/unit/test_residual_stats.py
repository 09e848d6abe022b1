"""Healthy residual statistics and the residual z-score."""
from __future__ import annotations

import numpy as np
import pytest
from UADContrastiveLib.detection.residual_stats import (
    SD_FLOOR,
    compute_residual_stats,
    load_residual_stats,
    residual_zscore,
    save_residual_stats,
)


class ShrinkEngine:
    """Reconstructs every voxel as 90 % of its value: residual = 0.1 x input."""

    def reconstruct(self, volume, brain, progress=None):
        return np.where(brain, 0.9 * volume, volume)

    def residual(self, volume, healthy):
        return volume - healthy


def test_stats_of_a_known_residual(tmp_path):
    rng = np.random.default_rng(0)
    brain = np.zeros((20, 20, 20), bool)
    brain[3:17, 3:17, 3:17] = True
    volumes = [(np.full(brain.shape, value, np.float32), brain) for value in (1.0, 2.0, 3.0)]
    mean, sd = compute_residual_stats(ShrinkEngine(), volumes)
    centre = (10, 10, 10)  # deep inside: the 1-voxel smoothing (4 sigma) sees only brain
    assert mean[centre] == pytest.approx(0.2, abs=1e-3)
    assert sd[centre] == pytest.approx(np.std([0.1, 0.2, 0.3]), abs=1e-3)
    assert sd.min() >= SD_FLOOR
    save_residual_stats(tmp_path, mean, sd)
    loaded_mean, loaded_sd = load_residual_stats(tmp_path)
    np.testing.assert_allclose(loaded_mean, mean, atol=1e-3)
    residual = rng.normal(0, 0.1, brain.shape).astype(np.float32)
    z = residual_zscore(residual, (mean, sd))
    np.testing.assert_allclose(z, (np.abs(residual) - mean) / sd, rtol=1e-5)


def test_missing_stats_means_raw_maps(tmp_path):
    assert load_residual_stats(tmp_path) is None


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="grid"):
        residual_zscore(np.zeros((2, 2, 2)), (np.zeros((3, 3, 3)), np.ones((3, 3, 3))))
