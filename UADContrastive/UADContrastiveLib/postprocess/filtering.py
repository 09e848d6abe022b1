"""From a signed score to an anomaly map: polarity, brain erosion, median/Gaussian filter.

The settings live in PostprocessConfig, which the model card stores (its `postprocess`
entry) so that a detection can be reproduced exactly. Thresholding and connected
components are in `components`, choosing a threshold in `calibration`, the names of the
calibrated thresholds in `presets`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from ..errors import ModelError

FILTERS = ("median", "gaussian")
POLARITIES = ("absolute", "positive", "negative")
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class PostprocessConfig:
    """How a residual becomes a mask; every field is stored in the model card.

    erosion_mm: brain-mask erosion; residuals in this rim are registration and
        skull-stripping noise, not anatomy.
    filter, size: "gaussian" (FWHM in voxels; the default, 3 voxels = 6 mm on the 2 mm model
        grid, normalised by the smoothed brain so the edge is not darkened) or "median" (window
        width in voxels). On the tuning part the Gaussian beat the 3-voxel median on every
        lesion figure (AUPRC 0.357 against 0.329 with 0.2.1's weights, docs/evaluation.md); both
        remove single-voxel speckle and keep lesions of a few mm.
    polarity: which side of the signed healthy score counts (detection.anomaly_map): "absolute"
        (the default: brighter and darker than healthy brains alike), "positive" (only brighter,
        e.g. FLAIR lesions) or "negative" (only darker).
    normalise_percentile: off by default and in every shipped card. If set, each scan's map is
        divided by this percentile of its own brain values: the scan is then measured against
        itself, not against healthy brains (a healthy scan always shows "findings", a large
        lesion dims itself). Kept only as an explicit option for experiments.
    residual_sigma_mm: Gaussian smoothing (sigma, mm) of the signed residual inside the brain
        before it is scored (detection.anomaly_map): the sign-alternating residual along sharp
        edges averages out, a lesion's one-signed residual stays. The healthy statistics are
        fitted on residuals smoothed the same way.
    The detection rule that follows (threshold and minimum component size) is not here: it
    belongs to the card's calibrated `thresholds`, which were computed for one minimum size.
    """

    erosion_mm: float = 4.0
    filter: str = "gaussian"
    size: int = 3
    polarity: str = "absolute"
    normalise_percentile: float | None = None
    residual_sigma_mm: float = 0.0

    def __post_init__(self):
        problems = []
        if self.filter not in FILTERS:
            problems.append(f"filter must be one of {FILTERS}, not {self.filter!r}")
        if self.polarity not in POLARITIES:
            problems.append(f"polarity must be one of {POLARITIES}, not {self.polarity!r}")
        if not self.size >= 1:
            problems.append(f"size must be >= 1 voxel, not {self.size!r}")
        if not self.erosion_mm >= 0:
            problems.append("erosion_mm must be >= 0")
        if not self.residual_sigma_mm >= 0:
            problems.append("residual_sigma_mm must be >= 0")
        if self.normalise_percentile is not None and not 0 < self.normalise_percentile <= 100:
            problems.append(f"normalise_percentile must be in (0, 100], not {self.normalise_percentile!r}")
        if problems:
            raise ValueError("invalid post-processing settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, card_path=None) -> PostprocessConfig:
        """Read the model card's entry; unknown keys mean a newer or edited card, so refuse them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(card_path, f"field 'postprocess' holds unknown keys {unknown}.",
                             "The model card was written by a newer version of UADContrastive, or edited.")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ModelError(card_path, f"field 'postprocess' is invalid: {error}") from None

    def filter_map(self, residual: np.ndarray, brain: np.ndarray, spacing_mm=2.0) -> np.ndarray:
        return filter_anomaly_map(residual, brain, erosion_mm=self.erosion_mm, spacing_mm=spacing_mm,
                                  filter=self.filter, size=self.size, polarity=self.polarity,
                                  normalise_percentile=self.normalise_percentile)


DEFAULTS = PostprocessConfig()


def smooth_in_brain(values: np.ndarray, brain: np.ndarray, sigma_mm: float, spacing_mm=2.0) -> np.ndarray:
    """Gaussian smoothing of `values` inside `brain`, normalised by the smoothed mask (voxels
    outside the brain neither enter nor darken the edge); 0 outside the brain."""
    if sigma_mm <= 0:
        return np.asarray(values, dtype=np.float32)
    inside = (np.asarray(brain) > 0).astype(np.float32)
    sigma = sigma_mm / _spacing_zyx(spacing_mm)
    weight = ndimage.gaussian_filter(inside, sigma, mode="constant")
    smoothed = ndimage.gaussian_filter(np.asarray(values, np.float32) * inside, sigma, mode="constant")
    return np.divide(smoothed, weight, out=np.zeros_like(smoothed), where=(weight > 1e-3) & (inside > 0))


def _spacing_zyx(spacing_mm) -> np.ndarray:
    """A scalar spacing, or one per array axis (z, y, x), as a 3-vector."""
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(spacing > 0):
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    return spacing


def erode_brain(brain: np.ndarray, erosion_mm: float, spacing_mm=2.0) -> np.ndarray:
    """Brain mask eroded by an ellipsoid of radius erosion_mm (anisotropic spacing respected)."""
    brain = np.asarray(brain) > 0
    if erosion_mm <= 0:
        return brain
    spacing = _spacing_zyx(spacing_mm)
    radius = np.floor(erosion_mm / spacing + 1e-6).astype(int)
    if not radius.any():
        return brain
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g * s / erosion_mm) ** 2 for g, s in zip(grids, spacing)) <= 1.0 + 1e-6
    # border_value=0: the brain never touches the grid edge on the model grid; if it does,
    # voxels at the edge are as unreliable as those at the brain surface.
    return ndimage.binary_erosion(brain, structure=ball, border_value=0)


def filter_anomaly_map(residual: np.ndarray, brain: np.ndarray, erosion_mm: float = DEFAULTS.erosion_mm,
                       spacing_mm=2.0, filter: str = DEFAULTS.filter, size: int = DEFAULTS.size,
                       polarity: str = DEFAULTS.polarity,
                       normalise_percentile: float | None = DEFAULTS.normalise_percentile) -> np.ndarray:
    """Anomaly map (float32, same shape) from a residual (input - healthy reconstruction).

    residual, brain: 3D arrays on the model grid (z, y, x); spacing_mm: scalar or (z, y, x).
    The map is 0 outside the eroded brain. Voxels outside it are zeroed before filtering, so
    rim noise cannot leak inwards (the median near the eroded edge is therefore conservative);
    the Gaussian is normalised by the smoothed mask so edge voxels are not darkened.
    """
    PostprocessConfig(erosion_mm=erosion_mm, filter=filter, size=size, polarity=polarity,
                      normalise_percentile=normalise_percentile)  # validates the settings
    residual = np.asarray(residual, dtype=np.float32)
    if residual.ndim != 3 or np.shape(brain) != residual.shape:
        raise ValueError(f"residual {residual.shape} and brain {np.shape(brain)} must be 3D and the same shape")
    if polarity == "absolute":
        signal = np.abs(residual)
    elif polarity == "positive":
        signal = np.maximum(residual, 0)
    else:
        signal = np.maximum(-residual, 0)
    inside = erode_brain(brain, erosion_mm, spacing_mm)
    signal = np.where(inside, signal, np.float32(0))
    if filter == "median":
        smoothed = ndimage.median_filter(signal, size=int(size), mode="constant", cval=0.0)
    else:
        sigma = float(size) / FWHM_PER_SIGMA
        weight = ndimage.gaussian_filter(inside.astype(np.float32), sigma, mode="constant")
        smoothed = ndimage.gaussian_filter(signal, sigma, mode="constant")
        smoothed = np.divide(smoothed, weight, out=np.zeros_like(smoothed), where=weight > 1e-3)
    smoothed[~inside] = 0.0
    if normalise_percentile is not None and inside.any():
        scale = float(np.percentile(smoothed[inside], normalise_percentile))
        if scale > 0:
            smoothed /= scale
    return smoothed.astype(np.float32, copy=False)
