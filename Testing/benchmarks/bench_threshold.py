"""Time threshold_components on a realistic 256^3 anomaly map (the Slicer slider's hot path).

Prints milliseconds per update for a few thresholds and minimum sizes; no pass/fail.
Run: .venv/bin/python Testing/benchmarks/bench_threshold.py [--repeats N] [--connectivity 26]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from UADContrastiveLib.postprocess import threshold_components

SHAPE = (256, 256, 256)
SPACING_XYZ = (1.0, 1.0, 1.0)


def realistic_map(seed: int = 0) -> np.ndarray:
    """|Smooth noise| inside a brain-sized ellipsoid (about 1.5 L at 1 mm) plus a few lesion
    blobs of 3-12 mm radius; 0 outside the brain, as filter_anomaly_map returns it."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    brain = ((z - 128) / 62.0) ** 2 + ((y - 128) / 85.0) ** 2 + ((x - 128) / 68.0) ** 2 < 1.0
    # Noise correlated over a few mm, like a filtered residual; made at half resolution for speed.
    noise = ndimage.gaussian_filter(rng.standard_normal([s // 2 for s in SHAPE]).astype(np.float32), 1.0)
    noise = ndimage.zoom(noise, 2, order=1)
    anomaly = 0.1 * np.abs(noise / noise.std())
    for (cz, cy, cx), radius in [((110, 120, 100), 12), ((150, 140, 160), 6), ((90, 100, 130), 3),
                                 ((140, 80, 110), 4)]:
        anomaly += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2.0 * radius**2))
    return np.where(brain, anomaly, 0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--connectivity", type=int, default=26, choices=(6, 18, 26))
    args = parser.parse_args()
    anomaly = realistic_map()
    brain_voxels = np.count_nonzero(anomaly)
    print(f"map {SHAPE} float32, {brain_voxels / 1e6:.2f} M brain voxels, connectivity {args.connectivity}")
    print(f"{'threshold':>9} {'min mm3':>8} {'flagged %brain':>14} {'components':>10} {'ms/update':>10} {'max ms':>7}")
    for threshold in (0.1, 0.2, 0.3, 0.5):
        for min_size in (0.0, 100.0, 1000.0):
            threshold_components(anomaly, threshold, min_size, SPACING_XYZ, args.connectivity)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                mask, components = threshold_components(anomaly, threshold, min_size, SPACING_XYZ,
                                                         args.connectivity)
                times.append((time.perf_counter() - start) * 1000.0)
            flagged = 100.0 * np.count_nonzero(mask) / brain_voxels
            print(f"{threshold:9.2f} {min_size:8.0f} {flagged:14.3f} {len(components):10d} "
                  f"{np.median(times):10.1f} {max(times):7.1f}")


if __name__ == "__main__":
    main()
