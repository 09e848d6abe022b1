"""One detection (DESIGN section 2): `detector` (a loaded model + template: volume in,
healthy reconstruction, anomaly map and mask out, all on the input grid) and
`residual_stats` (healthy residual statistics that turn residuals into z-scores).
The `uadc detect` and `uadc calibrate` commands are in `commands/`."""
