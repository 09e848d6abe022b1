"""What every engine's training shares:

  config        the training configuration (defaults + recipe file + overrides)
  cohort        the scans a user trains on (folder, CSV or IXI layout), cached and split by subject
  slice_cache   training volumes preprocessed once through the detection path; slice datasets
  stage_runner  the one training loop: a stage under a wall-clock budget, EMAs, checkpoints, resume, DDP
  calibration   residual statistics and healthy thresholds fitted on the cohort through detection
  corruptions   synthetic anomalies: anomaly-imitating views and synthetic lesions
  augment       intensity augmentation of slices
  loop          what runs share outside the loop: checkpoint files, stop requests, batches
  distributed   torchrun / DistributedDataParallel wrapper
Each engine's own training (its stages and model folder) lives in its folder under `engines/`.
"""
