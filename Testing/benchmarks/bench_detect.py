"""Seconds per volume of `Detector.run` in one process (model already loaded), per stage and
preprocessing step, median over repeats after a warm-up; peak memory. Prints figures; no pass/fail.
For the command as a user runs it (start-up, model load, writing) see bench_pipeline.py.

    python Testing/benchmarks/bench_detect.py [--model NAME|PATH] [--device cpu] [--repeats 3] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

from UADContrastiveLib.detection.detector import Detector  # noqa: E402
from UADContrastiveLib.io import read_volume  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    scans = [sorted((args.data / "ixi_t1" / "images").iterdir())[0],
             sorted((args.data / "lesions" / "wml10").iterdir())[0] / "t1.nii.gz",
             args.data / "lesions" / "brats2013" / "brats_2013_pat0001_1" / "t1c.nii.gz"]
    load = os.getloadavg()
    start = time.perf_counter()
    detector = Detector(args.model, args.device)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the "
          f"start; model {detector.card.name} on {detector.device}: loaded in {time.perf_counter() - start:.2f} s")
    columns = {}
    for scan in scans:
        image = read_volume(scan)
        detector.run(image, source=scan)  # warm-up (template pyramid, caches)
        walls, stages = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            detection = detector.run(image, source=scan)
            walls.append(time.perf_counter() - start)
            stages.append({**detection.timings, **{f"  {k}": v for k, v in detection.preprocessed.timings.items()}})
        figures = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
        figures["total"] = statistics.median(walls)
        columns[f"{scan.parent.name[:24]}/{scan.name} {'x'.join(map(str, image.GetSize()))}"] = figures
    names = list(next(iter(columns.values())))
    print(f"\nDetector.run in one process (model loaded; no file writing), median of {args.repeats} after a "
          "warm-up (s, wall)\n")
    print("| stage | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{c[name]:.2f}" for c in columns.values()) + " |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak_mib:.0f} MiB")

if __name__ == "__main__":
    main()
