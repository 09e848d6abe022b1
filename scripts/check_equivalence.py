"""Are detection results unchanged by a speed change? Runs `uadc detect` on the demo volume, two
IXI validation heads and a BraTS case, then either stores the outputs as a reference or compares
them with one stored before the change (float tolerance on maps, Dice on masks).

    python scripts/check_equivalence.py --save /tmp/uadc-reference     # before the change
    python scripts/check_equivalence.py --compare /tmp/uadc-reference  # after it
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "UADContrastive"))

from UADContrastiveLib import cli  # noqa: E402
from UADContrastiveLib.datasets import ixi_subjects, split  # noqa: E402
from UADContrastiveLib.outputs import names  # noqa: E402

OUTPUTS = {"healthy": names.HEALTHY, "anomaly_map": names.ANOMALY_MAP, "anomaly_mask": names.ANOMALY_MASK,
           "brain_mask": names.BRAIN_MASK}
MAP_TOLERANCE = 1e-3      # anomaly-map units (residual z-scores of order 1-10)
HEALTHY_TOLERANCE = 1e-3  # relative to the input's intensity range


def cases(data: Path, work: Path) -> list[Path]:
    from UADContrastiveLib.commands.demo import demo_volume
    from UADContrastiveLib.io import write_volume

    demo = write_volume(demo_volume()[0], work / "demo.nii.gz")
    _, validation = split(ixi_subjects(data / "ixi_t1"))
    brats = data / "lesions" / "brats2013" / "brats_2013_pat0001_1" / "t1c.nii.gz"
    return [demo, *(s.image for s in validation[:2]), brats]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        inputs = cases(args.data, work)
        code = cli.main(["detect", *map(str, inputs), "--out-dir", str(work / "out"), "--no-overview"])
        if code:
            return code
        failures = 0
        for path in inputs:
            stem = path.name.split(".")[0]
            arrays = {key: sitk.GetArrayFromImage(sitk.ReadImage(str(work / "out" / stem / name)))
                      for key, name in OUTPUTS.items()}
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(args.save / f"{stem}.npz", **arrays)
                continue
            reference = np.load(args.compare / f"{stem}.npz")
            input_range = float(np.ptp(reference["healthy"])) or 1.0
            map_diff = float(np.abs(arrays["anomaly_map"] - reference["anomaly_map"]).max())
            healthy_diff = float(np.abs(arrays["healthy"] - reference["healthy"]).max()) / input_range
            mask_dice = dice(arrays["anomaly_mask"], reference["anomaly_mask"])
            brain_dice = dice(arrays["brain_mask"], reference["brain_mask"])
            ok = map_diff <= MAP_TOLERANCE and healthy_diff <= HEALTHY_TOLERANCE and brain_dice == 1.0
            failures += not ok
            print(f"{'ok  ' if ok else 'DIFF'} {stem}: map max |diff| {map_diff:.2e}, healthy max |diff| "
                  f"{healthy_diff:.2e} of range, anomaly-mask Dice {mask_dice:.4f}, brain-mask Dice {brain_dice:.4f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
