"""Seconds per volume and peak memory of `Detector.run`, per stage (prints figures; no pass/fail).

    python Testing/benchmarks/bench_detect.py [--model NAME|PATH] [--device cpu] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from UADContrastiveLib.detection.detector import Detector
from UADContrastiveLib.io import read_volume

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    scans = [sorted((args.data / "ixi_t1" / "images").iterdir())[0],
             sorted((args.data / "lesions" / "wml10").iterdir())[0] / "t1.nii.gz",
             args.data / "lesions" / "brats2013" / "brats_2013_pat0001_1" / "t1c.nii.gz"]
    start = time.perf_counter()
    detector = Detector(args.model, args.device)
    print(f"model {detector.card.name} on {detector.device}: loaded in {time.perf_counter() - start:.2f} s")
    for scan in scans:
        image = read_volume(scan)
        start = time.perf_counter()
        detection = detector.run(image, source=scan)
        total = time.perf_counter() - start
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in detection.timings.items())
        print(f"{scan.parent.name}/{scan.name} {image.GetSize()}: {total:.1f} s ({stages})")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
