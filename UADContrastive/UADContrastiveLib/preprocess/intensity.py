"""Intensity normalisation of the model grid: brain percentiles to 0 and 1, clipped to
INTENSITY_RANGE, and back. numpy only, so the engines can import it while their model loads
(see lean_imports).

INTENSITY_RANGE is the one range every model-grid slice lives in: preprocessing clips to it,
the engines clamp their reconstructions to it, training augmentation keeps to it and the
template build scales its heads by it. Its top, 1.5, leaves room above the brain's 99th
percentile for lesions brighter than healthy tissue.
"""
from __future__ import annotations

import numpy as np

INTENSITY_PERCENTILES = (1.0, 99.0)  # brain percentiles mapped to 0 and 1
INTENSITY_RANGE = (0.0, 1.5)


def normalise_intensity(array: np.ndarray, mask: np.ndarray,
                        percentiles=INTENSITY_PERCENTILES) -> tuple[np.ndarray, tuple[float, float]]:
    """Map brain percentiles (p1, p99) to (0, 1), clip to INTENSITY_RANGE, zero outside the mask;
    returns the normalised array and the (low, high) input intensities mapped to 0 and 1."""
    values = array[mask > 0]
    if values.size == 0:
        raise ValueError("empty brain mask")
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        high = low + 1.0
    normalised = np.clip((array - low) / (high - low), *INTENSITY_RANGE).astype(np.float32)
    normalised[mask == 0] = 0.0
    return normalised, (low, high)


def denormalise_intensity(normalised: np.ndarray, intensity_range: tuple[float, float]) -> np.ndarray:
    """The inverse of normalise_intensity inside its clip: back to the input's intensity scale."""
    low, high = intensity_range
    return (normalised * (high - low) + low).astype(np.float32)
