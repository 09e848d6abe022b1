"""Time threshold updates on a realistic 256^3 anomaly map (the Slicer sliders' hot path).

Prints milliseconds per update (median and worst over repeats; wall clock and this
process's CPU time, which is what the wall time would be on an idle machine) for a few
thresholds and minimum sizes, for:
  function     threshold_components(map, ...) from scratch,
  threshold    ComponentThresholder: the threshold slider moved (relabels),
  min size     ComponentThresholder: only the minimum-size slider moved (no relabelling).
No pass/fail. Run: .venv/bin/python Testing/benchmarks/bench_threshold.py [--repeats N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage
from UADContrastiveLib.postprocess.components import ComponentThresholder, threshold_components

SHAPE = (256, 256, 256)
SPACING_XYZ = (1.0, 1.0, 1.0)
THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
MIN_SIZES_MM3 = (0.0, 100.0, 1000.0)


def realistic_map(seed: int = 0) -> np.ndarray:
    """|Smooth noise| inside a brain-sized ellipsoid (1.5 L at 1 mm) plus four lesion blobs of
    3-12 mm radius; 0 outside the brain, as filter_anomaly_map returns it."""
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


def timed(update, repeats: int) -> tuple[float, float, float, object]:
    """(median wall ms, max wall ms, median CPU ms, last result)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = update()
        cpus.append((time.process_time() - cpu) * 1000.0)
        walls.append((time.perf_counter() - wall) * 1000.0)
    return float(np.median(walls)), max(walls), float(np.median(cpus)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--connectivity", type=int, default=26, choices=(6, 26))
    args = parser.parse_args()
    anomaly = realistic_map()
    brain_voxels = np.count_nonzero(anomaly)
    start = time.perf_counter()
    session = ComponentThresholder(anomaly, SPACING_XYZ, args.connectivity)
    setup_ms = (time.perf_counter() - start) * 1000.0
    print(f"map {SHAPE} float32, {brain_voxels / 1e6:.2f} M brain voxels, connectivity {args.connectivity}, "
          f"ComponentThresholder set-up {setup_ms:.0f} ms")
    print(f"{'threshold':>9} {'min mm3':>7} {'flagged':>8} {'comps':>5} | "
          f"{'function ms (max, cpu)':>22} | {'threshold ms (max, cpu)':>23} | {'min size ms (max, cpu)':>22}")
    for threshold in THRESHOLDS:
        for min_size in MIN_SIZES_MM3:
            threshold_components(anomaly, threshold, min_size, SPACING_XYZ, args.connectivity)  # warm-up
            function = timed(lambda t=threshold, s=min_size: threshold_components(
                anomaly, t, s, SPACING_XYZ, args.connectivity), args.repeats)

            def slide_threshold(t=threshold, s=min_size):
                session._last = None  # as if the threshold had just moved
                return session(t, s)

            moved = timed(slide_threshold, args.repeats)
            size_only = timed(lambda t=threshold, s=min_size: session(t, s), args.repeats)
            mask, components = function[3]
            flagged = 100.0 * np.count_nonzero(mask) / brain_voxels
            row = [f"{t[0]:6.1f} ({t[1]:5.1f}, {t[2]:5.1f})" for t in (function, moved, size_only)]
            print(f"{threshold:9.2f} {min_size:7.0f} {flagged:7.2f}% {len(components):5d} | "
                  f"{row[0]:>22} | {row[1]:>23} | {row[2]:>22}")


if __name__ == "__main__":
    main()
