"""How long one threshold-slider move takes: update_segment_from_map on a 256^3 anomaly map,
through the real MRML segmentation node of slicer-core. Prints ms per update; no pass/fail.

    .venv/bin/python Testing/benchmarks/bench_slider_update.py [--size 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

import slicer  # noqa: E402
from UADContrastiveLib.postprocess.components import threshold_components  # noqa: E402
from UADContrastiveSlicerLib import geometry, segments  # noqa: E402
from UADContrastiveSlicerLib import scene as scene_logic  # noqa: E402


def synthetic_map(size: int, seed: int = 0) -> np.ndarray:
    """A brain-sized ball of low noise with a few hot blobs: realistic sparsity above threshold."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:size, :size, :size]
    centre = size / 2
    brain = ((z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2) < (0.4 * size) ** 2
    anomaly_map = np.where(brain, rng.gamma(2.0, 0.05, (size,) * 3), 0).astype(np.float32)
    for _ in range(6):
        cz, cy, cx = rng.integers(int(0.3 * size), int(0.7 * size), 3)
        radius = rng.uniform(0.02, 0.06) * size
        blob = np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2))
        anomaly_map += (blob * brain).astype(np.float32)
    return anomaly_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    scene = slicer.vtkMRMLScene()
    spacing = 1.0
    ijk_to_ras = np.diag([-spacing, -spacing, spacing, 1.0])
    input_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
    map_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "map")
    start = time.perf_counter()
    anomaly_map = synthetic_map(args.size)
    geometry.update_volume_from_array(map_node, anomaly_map, ijk_to_ras)
    geometry.update_volume_from_array(input_node, np.zeros_like(anomaly_map), ijk_to_ras)
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "anomaly")
    segmentation_node.CreateDefaultDisplayNodes()
    segments.set_reference_geometry(segmentation_node, input_node)
    results = scene_logic.AnomalyResults(input_node, None, map_node, segmentation_node)
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"setup ({args.size}^3 map): {1000 * (time.perf_counter() - start):.0f} ms")

    results.update_segment_from_map(0.5, 0.0)  # warm-up: first segment creation
    print(f"\nOne slider move on a {args.size}^3 map, median of {args.repeats} moves (ms, wall)\n")
    print("Every move changes the slider's value a little (a drag), so nothing is served from the previous\n"
          "move's labelling except when only the minimum size moves, as in the module.\n")
    print("| slider | threshold | min size (mm3) | update_segment_from_map | worst | threshold_components alone "
          "| regions | voxels |")
    print("|---|---|---|---|---|---|---|---|")
    for moved, threshold, min_size in (("threshold", 0.3, 0.0), ("threshold", 0.5, 0.0), ("min size", 0.5, 100.0),
                                       ("threshold", 0.8, 0.0), ("threshold", 5.0, 0.0)):
        def settings(k: int, moved=moved, threshold=threshold, min_size=min_size) -> tuple[float, float]:
            step = 1e-4 * (k + 1)
            return (threshold + step, min_size) if moved == "threshold" else (threshold, min_size + 10 * step)

        results.update_segment_from_map(*settings(-1))  # the position the drag starts from
        times = []
        for k in range(args.repeats):
            start = time.perf_counter()
            summary = results.update_segment_from_map(*settings(k))
            times.append(1000 * (time.perf_counter() - start))
        core = []  # the core's one-off thresholding (no cache), to see what the MRML side adds
        for k in range(args.repeats):
            start = time.perf_counter()
            threshold_components(anomaly_map, *settings(k), (spacing,) * 3)
            core.append(1000 * (time.perf_counter() - start))
        print(f"| {moved} | {threshold:.1f} | {min_size:.0f} | {statistics.median(times):.1f} | {max(times):.1f} | "
              f"{statistics.median(core):.1f} | {summary.count} | {segments.segment_voxel_count(segmentation_node)} |")


if __name__ == "__main__":
    main()
