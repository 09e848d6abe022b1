"""Healthy statistics of a model's residual: how unusual is this voxel's residual for a healthy
brain the model has never seen?

Even on healthy brains a reconstruction model leaves anatomy-bound residuals (sulci, ventricle
borders, the cortex). Each voxel's residual r = input - reconstruction (Engine.residual) is
scored against the residuals of healthy scans at the same model-grid location:

    z = (r - median) / scale_above   where r >= median   (brighter than the model expects)
    z = (r - median) / scale_below   where r <  median   (darker than the model expects)

- signed: brighter and darker anomalies are each measured against their own healthy spread
  (a one-sided robust scale, 1.4826 x the median deviation on that side, which equals the sd
  for a normal distribution), so the map's sign means what it says;
- robust: median and median deviations, so one odd healthy scan does not move the statistics;
- fitted on scans the model has NOT been trained on (the card's statistics cohort, or a
  folder of unseen healthy scans): training scans are reconstructed better than any new scan
  and would make every new scan look abnormal;
- defined everywhere a detection brain mask can reach: the per-voxel values are smoothed with
  weights equal to the number of brains covering each voxel (mask-normalised smoothing, so the
  zeros outside the fitted brains never enter), and where few brains cover a voxel (the rim of
  a user's or a skull-stripped scan's own brain mask) they fall back to a regional value
  (wider smoothing), then to the whole-brain value.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from ..errors import ModelError

STATISTICS_FILE = "healthy_statistics.npz"
LEGACY_STATISTICS_FILE = "residual_stats.npz"  # |residual| mean/sd of versions before 0.4
MAD_TO_SD = 1.4826            # median absolute deviation -> standard deviation (normal data)
MIN_BRAINS_PER_VOXEL = 5      # fewer covering brains: blend towards the regional value
LOCAL_SIGMA_VOXELS = 1.0      # smoothing of the per-voxel values (2 mm on the model grid)
REGIONAL_SIGMA_VOXELS = 4.0   # the regional fallback (8 mm)
SCALE_FLOOR_FRACTION = 0.25   # scales never below this share of the whole-brain scale
MIN_SCANS = 3


@dataclass
class HealthyStatistics:
    """Per model-grid voxel: median residual and the healthy spread above and below it."""

    median: np.ndarray
    scale_above: np.ndarray
    scale_below: np.ndarray
    scans: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, residuals: Sequence[np.ndarray], brains: Sequence[np.ndarray],
            scans: Sequence[str] = ()) -> HealthyStatistics:
        """Statistics of healthy model-grid residuals (each with its brain mask)."""
        if len(residuals) < MIN_SCANS or len(residuals) != len(brains):
            raise ValueError(f"need at least {MIN_SCANS} healthy residuals with a brain mask each, "
                             f"got {len(residuals)} and {len(brains)}")
        shape = residuals[0].shape
        covered = np.zeros(shape, dtype=bool)
        for brain in brains:
            covered |= np.asarray(brain, dtype=bool)
        if not covered.any():
            raise ValueError("the healthy brain masks are empty")
        values = np.stack([np.where(np.asarray(b, bool)[covered], np.asarray(r, np.float32)[covered], np.nan)
                           for r, b in zip(residuals, brains)])
        count = np.sum(~np.isnan(values), axis=0).astype(np.float32)
        median = _nanmedian(values)
        deviation = values - median
        above = MAD_TO_SD * _nanmedian(np.where(deviation > 0, deviation, np.nan))
        below = MAD_TO_SD * _nanmedian(np.where(deviation < 0, -deviation, np.nan))
        fields_ = [_fill_everywhere(v, count, covered, shape) for v in (median, above, below)]
        median_map, above_map, below_map = fields_
        for scale in (above_map, below_map):
            floor = SCALE_FLOOR_FRACTION * float(np.median(scale[covered]))
            np.maximum(scale, max(floor, 1e-6), out=scale)
        # stored as float16 (a model folder holds 3 fields of 0.7 M voxels): the fitted values are
        # rounded the same way at once, so calibration scores with exactly what detection will load
        stored = [v.astype(np.float16).astype(np.float32) for v in (median_map, above_map, below_map)]
        return cls(*stored, list(scans))

    def score(self, residual: np.ndarray) -> np.ndarray:
        """Signed healthy z-score of a model-grid residual (positive: brighter than expected)."""
        residual = np.asarray(residual, dtype=np.float32)
        if residual.shape != self.median.shape:
            raise ValueError(f"residual {residual.shape} is not on the statistics' grid {self.median.shape}")
        deviation = residual - self.median
        return np.where(deviation >= 0, deviation / self.scale_above, deviation / self.scale_below).astype(np.float32)

    def save(self, folder: Path) -> Path:
        from ..io import atomic_path

        path = Path(folder) / STATISTICS_FILE
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, median=self.median.astype(np.float16),
                                scale_above=self.scale_above.astype(np.float16),
                                scale_below=self.scale_below.astype(np.float16))
        return path

    @classmethod
    def load(cls, folder: Path, scans: Sequence[str] = ()) -> HealthyStatistics:
        path = Path(folder) / STATISTICS_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(*(data[k].astype(np.float32) for k in ("median", "scale_above", "scale_below")), list(scans))
        except (OSError, KeyError, ValueError) as error:
            raise ModelError(path, f"could not be read as healthy statistics ({error}).",
                             "Refit them: uadc calibrate --model MODEL --statistics HEALTHY_SCANS.") from None


def leave_one_out(residuals: Sequence[np.ndarray], brains: Sequence[np.ndarray],
                  scans: Sequence[str] = ()) -> Iterator[HealthyStatistics]:
    """For each scan in turn, the statistics of all the others: its own map is then scored as an
    unseen scan's is (used where one scan serves both the statistics and the thresholds)."""
    names = list(scans) or [str(i) for i in range(len(residuals))]
    for i in range(len(residuals)):
        others = [j for j in range(len(residuals)) if j != i]
        yield HealthyStatistics.fit([residuals[j] for j in others], [brains[j] for j in others],
                                    [names[j] for j in others])


def _nanmedian(values: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN; NaN (no warning) where a column has no value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": those voxels stay NaN
        return np.nanmedian(values, axis=0).astype(np.float32)


def _fill_everywhere(values: np.ndarray, count: np.ndarray, covered: np.ndarray, shape) -> np.ndarray:
    """A per-voxel statistic (defined on `covered`, NaN where too few values) smoothed with the
    covering-brain count as weight, and defined on the whole grid: local value where enough brains
    cover the neighbourhood, blended into the regional then the whole-brain value where few do."""
    defined = ~np.isnan(values)
    weight = np.zeros(shape, np.float32)
    weighted = np.zeros(shape, np.float32)
    weight[covered] = np.where(defined, count, 0.0)
    weighted[covered] = np.where(defined, values * count, 0.0)
    whole_brain = float(np.median(values[defined])) if defined.any() else 0.0
    result = np.full(shape, whole_brain, np.float32)
    for sigma in (REGIONAL_SIGMA_VOXELS, LOCAL_SIGMA_VOXELS):  # coarse first, the finer one blends on top
        smooth_weight = ndimage.gaussian_filter(weight, sigma, mode="constant")
        smooth_value = ndimage.gaussian_filter(weighted, sigma, mode="constant")
        local = np.divide(smooth_value, smooth_weight, out=np.zeros(shape, np.float32), where=smooth_weight > 1e-6)
        trust = np.clip(smooth_weight / MIN_BRAINS_PER_VOXEL, 0.0, 1.0)
        result = trust * local + (1.0 - trust) * result
    return result.astype(np.float32)
