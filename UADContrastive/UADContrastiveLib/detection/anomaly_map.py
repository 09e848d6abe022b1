"""The one anomaly-map chain every path uses (detection, calibration, evaluation, tuning):

    engine residual (input - healthy reconstruction, model grid)
      -> healthy score: signed z against healthy statistics of unseen brains (healthy_statistics)
      -> filtered map: polarity, brain erosion, median/Gaussian filter (PostprocessConfig)
      -> input grid: resampled onto the scan's own voxels, 0 outside its brain mask

No step rescales a map by its own values (a per-scan percentile was the default before 0.4):
a score means the same on every scan, so one calibrated threshold flags about the same share
of every healthy brain, and a large lesion does not dim itself. Polarity acts on the signed
score: "absolute" (the default) flags brighter and darker anomalies alike, "positive" only
brighter, "negative" only darker than the healthy brains.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..postprocess.filtering import PostprocessConfig
from .healthy_statistics import LEGACY_STATISTICS_FILE, STATISTICS_FILE, HealthyStatistics

if TYPE_CHECKING:
    from ..preprocess.pipeline import Preprocessed


class AnomalyMapChain:
    """The chain of one model: its engine's residual, its healthy statistics (or none: the raw
    residual is the score), its post-processing and the model grid's spacing."""

    def __init__(self, residual, statistics: HealthyStatistics | None, postprocess: PostprocessConfig,
                 spacing_mm=2.0):
        self.residual = residual  # Engine.residual(volume, healthy) -> signed residual
        self.statistics = statistics
        self.postprocess = postprocess
        self.spacing_mm = spacing_mm

    def scored_residual(self, volume: np.ndarray, healthy: np.ndarray, brain: np.ndarray) -> np.ndarray:
        """The residual the statistics describe: the engine's, smoothed in the brain when the card asks."""
        from ..postprocess.filtering import smooth_in_brain

        return smooth_in_brain(self.residual(volume, healthy), brain, self.postprocess.residual_sigma_mm,
                               self.spacing_mm)

    def score(self, volume: np.ndarray, healthy: np.ndarray, brain: np.ndarray,
              statistics: HealthyStatistics | None = None) -> np.ndarray:
        """Signed score on the model grid; `statistics` overrides the model's own (leave-one-out)."""
        statistics = statistics or self.statistics
        residual = self.scored_residual(volume, healthy, brain)
        return residual if statistics is None else statistics.score(residual)

    def filtered(self, score: np.ndarray, brain: np.ndarray) -> np.ndarray:
        """The anomaly map on the model grid from a signed score."""
        return self.postprocess.filter_map(score, brain, spacing_mm=self.spacing_mm)

    def model_map(self, volume: np.ndarray, healthy: np.ndarray, brain: np.ndarray,
                  statistics: HealthyStatistics | None = None) -> np.ndarray:
        return self.filtered(self.score(volume, healthy, brain, statistics), brain)

    @staticmethod
    def on_input_grid(model_map: np.ndarray, preprocessed: Preprocessed) -> np.ndarray:
        """The model-grid map on the input's voxels (z, y, x), 0 outside the input's brain mask."""
        import SimpleITK as sitk

        anomaly_map = sitk.GetArrayFromImage(preprocessed.to_input_grid(model_map)).astype(np.float32, copy=False)
        np.copyto(anomaly_map, 0.0, where=sitk.GetArrayViewFromImage(preprocessed.brain_mask_input) == 0)
        return anomaly_map


def read_statistics(model_dir: Path, card) -> HealthyStatistics | None:
    """The model's healthy statistics, None for a model without any (raw residual maps), and a
    ModelError for statistics of the old |residual| kind, which the new chain cannot use."""
    if STATISTICS_FILE in card.files:
        scans = (card.extra.get("healthy_statistics") or {}).get("scans") or []
        return HealthyStatistics.load(model_dir, scans)
    if LEGACY_STATISTICS_FILE in card.files:
        raise ModelError(Path(model_dir) / LEGACY_STATISTICS_FILE,
                         "holds residual statistics of an older version (|residual| mean and sd), which "
                         "this version no longer scores with.",
                         f"Refit them on healthy scans the model was not trained on: uadc calibrate --model "
                         f"{model_dir} --statistics HEALTHY_SCANS.")
    return None
