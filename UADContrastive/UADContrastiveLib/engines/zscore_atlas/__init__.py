"""The z-score atlas baseline: `engine` (reconstruction = atlas mean, residual in atlas sd
units) and `training` (fitting the atlas on healthy training volumes, `uadc train --engine
zscore_atlas`)."""
