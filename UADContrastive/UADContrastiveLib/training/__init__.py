"""What every engine's training shares:

  config        the training configuration (defaults + recipe file + overrides)
  slice_cache   training volumes preprocessed once through the detection path; slice datasets
  corruptions   synthetic anomalies: anomaly-imitating views and synthetic lesions
  augment       intensity augmentation of slices
  loop          budgets, progress, checkpoints, random state, batches
  distributed   torchrun / DistributedDataParallel wrapper
Each engine's own training (its stages and model folder) lives in its folder under `engines/`.
"""
