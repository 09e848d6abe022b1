"""The names of the calibrated thresholds: one list for calibration, the model card, the
report, detection and the Slicer module's preset buttons.

Standard library only: the Slicer module imports this when it loads, before any of the
core's dependencies may be installed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThresholdPreset:
    key: str                    # the key in the card's thresholds.values and in report.json
    false_positive_rate: float  # fraction of healthy brain voxels flagged at this threshold
    label: str                  # button text


# Most sensitive first: the Slicer module shows one button per preset in this order.
HEALTHY_FPR_PRESETS = (
    ThresholdPreset("fpr_1%", 0.01, "1 % FPR"),
    ThresholdPreset("fpr_0.5%", 0.005, "0.5 % FPR"),
    ThresholdPreset("fpr_0.1%", 0.001, "0.1 % FPR"),
)
DEFAULT_PRESET = "fpr_0.5%"
# A preset holds for every healthy calibration brain, not only for their pooled voxels: each of
# them may be flagged at most this many times the preset's share. Pooled alone, the most unusual
# healthy heads were flagged at 2-4 times it; 1.5 was chosen on the tuning part, where it keeps
# every unseen tuning head under twice the share (docs/evaluation.md).
PER_SCAN_FACTOR = 1.5
# Written by `uadc calibrate --labelled`: the threshold maximising Dice on labelled cases.
DICE_OPTIMAL = "dice_optimal"
PRESET_TOOLTIP = ("Threshold at which at most this fraction of healthy brain voxels is flagged, and at most "
                  f"{PER_SCAN_FACTOR:g} times it in any one healthy brain (calibrated on healthy scans for "
                  "the selected model).")
