"""One detection (DESIGN section 2): `detector` (a loaded model + template: volume in,
healthy reconstruction, anomaly map and mask out, all on the input grid), `anomaly_map` (the
one chain from residual to map that detection, calibration, evaluation and tuning share) and
`healthy_statistics` (what a healthy, unseen brain's residual looks like, voxel by voxel).
The `uadc detect` and `uadc calibrate` commands are in `commands/`."""
