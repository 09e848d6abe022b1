"""From a model residual to an anomaly mask.

  filtering    residual -> anomaly map (model grid), and PostprocessConfig (the card's settings)
  components   map -> mask + connected components (fast enough for the Slicer sliders)
  calibration  choose a threshold: healthy false-positive rate, or Dice-optimal with labels
  presets      the names of the calibrated thresholds (standard library only)

Nothing is imported here, so `postprocess.presets` stays light for the Slicer module.
"""
