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
# A preset holds for every healthy calibration brain, not only for their pooled voxels: none of
# them may be flagged over the preset's share (this factor times it). Pooled alone, the most
# unusual healthy heads were flagged at 2-4 times the share and unseen heads up to 3 times it;
# on the tuning part, factors 2, 1.5, 1.25 and 1 left the worst unseen head (thresholds from
# half of the tuning heads) at 1.26, 1.09, 0.91 and 0.75 % for the 0.5 % preset; 1 is the only
# factor with a margin under the 1 % every head must meet, and says the simplest thing
# (docs/evaluation.md, working period 4).
PER_SCAN_FACTOR = 1.0
# Written by `uadc calibrate --labelled`: the threshold maximising Dice on labelled cases.
DICE_OPTIMAL = "dice_optimal"
PRESET_TOOLTIP = ("Threshold at which no healthy calibration brain has more than this fraction of its "
                  "voxels flagged (calibrated on healthy scans for the selected model).")
