"""How long carrying the label atlas onto a scan takes (outputs.atlas_transfer), per detection:
the deformable step against the affine resampling it refines, on IXI heads (2 mm) and a BraTS
case (1 mm, 240 x 240 x 155). Prints wall and CPU seconds; no pass/fail.

    .venv/bin/python Testing/benchmarks/bench_atlas_transfer.py [--data ../shared/data] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

from UADContrastiveLib.io import read_volume  # noqa: E402
from UADContrastiveLib.outputs.atlas_transfer import atlas_on_input  # noqa: E402
from UADContrastiveLib.preprocess.checked import preprocess_checked  # noqa: E402
from UADContrastiveLib.preprocess.templates import load_atlas, load_template  # noqa: E402

SCANS = ("ixi_t1/images/IXI180-HH-1605_T1.nii.gz", "ixi_t1/images/IXI263-HH-1684_T1.nii.gz",
         "ixi_t1/images/IXI356-HH-2049_T1.nii.gz", "ixi_t1/images/IXI515-HH-2377_T1.nii.gz",
         "lesions/brats2013/brats_2013_pat0004_1/t1c.nii.gz")


def timed(run, repeats: int) -> tuple[float, float]:
    """(best wall s, best CPU s) of `repeats` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    template, (atlas, _) = load_template(), load_atlas()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; best of {args.repeats}")
    print(f"{'scan':<34}{'grid':>16}{'affine wall/CPU s':>20}{'deformable wall/CPU s':>24}")
    for relative in SCANS:
        image = read_volume(args.data / relative)
        pre, _ = preprocess_checked(image, template)
        affine = timed(lambda pre=pre: pre.to_input_grid(atlas, sitk.sitkNearestNeighbor), args.repeats)
        deformable = timed(lambda pre=pre: atlas_on_input(pre, template, atlas), args.repeats)
        grid = "x".join(str(n) for n in image.GetSize())
        print(f"{Path(relative).name[:33]:<34}{grid:>16}{affine[0]:>11.2f} / {affine[1]:<6.2f}"
              f"{deformable[0]:>14.2f} / {deformable[1]:<6.2f}")


if __name__ == "__main__":
    main()
