"""Seconds per volume of `Detector.run` in one process (model already loaded), per stage and
preprocessing step, median over repeats after a warm-up; peak memory. Prints figures; no pass/fail.
For the command as a user runs it (start-up, model load, writing) see bench_pipeline.py.

    python Testing/benchmarks/bench_detect.py [--model NAME|PATH] [--device cpu] [--repeats 3] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
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
    start = time.perf_counter()
    detector = Detector(args.model, args.device)
    print(f"model {detector.card.name} on {detector.device}: loaded in {time.perf_counter() - start:.2f} s")
    for scan in scans:
        image = read_volume(scan)
        detector.run(image, source=scan)  # warm-up
        walls, stages, steps = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            detection = detector.run(image, source=scan)
            walls.append(time.perf_counter() - start)
            stages.append(detection.timings)
            steps.append(detection.preprocessed.timings)
        stage = ", ".join(f"{k} {statistics.median(s[k] for s in stages):.2f}" for k in stages[0])
        step = ", ".join(f"{k} {statistics.median(s[k] for s in steps):.2f}" for k in steps[0])
        print(f"{scan.parent.name}/{scan.name} {image.GetSize()}: median {statistics.median(walls):.2f} s "
              f"({stage}; preprocess: {step})")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
