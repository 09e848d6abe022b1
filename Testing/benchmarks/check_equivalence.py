"""Regression check: are detection results unchanged by a change meant to keep them (a speed-up,
a refactoring)? Runs `uadc detect` on the demo volume, IXI validation heads, BraTS and WML cases,
then either stores the outputs as a reference or compares them with one stored before the change
(float tolerance on maps, Dice on masks; AUPRC of the map against the lesion truth where there
is one, before and after). Exit 1 when any case differs. A maintainer's script like the
benchmarks beside it (a few minutes of detection; not part of the test run).

    python Testing/benchmarks/check_equivalence.py --save /tmp/uadc-reference     # before the change
    python Testing/benchmarks/check_equivalence.py --compare /tmp/uadc-reference  # after it

--code DIR runs another checkout's core (the folder holding UADContrastiveLib), so the reference
can be taken with the code before the change. ITK runs on one thread (registration is not
bit-repeatable with several), so any difference comes from the change. A change that alters the
registration on purpose is judged by the brain-mask Dice and the AUPRC, not the
tolerance: the lines then say DIFF, and the summary gives the means.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]


def _code_from_argv() -> Path:
    """--code, read before anything of the core is imported (it decides which core that is)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--code", type=Path, default=REPO / "UADContrastive")
    return early.parse_known_args()[0].code.resolve()


CODE = _code_from_argv()
sys.path.insert(0, str(CODE))

from UADContrastiveLib import cli  # noqa: E402
from UADContrastiveLib.datasets import brats_cases, ixi_subjects, split, wml_cases  # noqa: E402
from UADContrastiveLib.evaluation.metrics import auprc  # noqa: E402
from UADContrastiveLib.outputs import names  # noqa: E402

OUTPUTS = {"healthy": names.HEALTHY, "anomaly_map": names.ANOMALY_MAP, "anomaly_mask": names.ANOMALY_MASK,
           "brain_mask": names.BRAIN_MASK}
MAP_TOLERANCE = 1e-3      # anomaly-map units (residual z-scores of order 1-10)
HEALTHY_TOLERANCE = 1e-3  # relative to the input's intensity range


def cases(data: Path, work: Path, heads: int, lesions: int) -> list[tuple[Path, Path | None]]:
    """(input, lesion truth or None): the demo, `heads` IXI validation heads, `lesions` BraTS
    (T1c) and `lesions` WML (T1) cases, each copied under a unique name."""
    from UADContrastiveLib.commands.demo import demo_volume
    from UADContrastiveLib.io import write_volume

    demo, truth = demo_volume()
    found = [(write_volume(demo, work / "demo.nii.gz"), write_volume(truth, work / "demo_truth.nii.gz"))]
    _, validation = split(ixi_subjects(data / "ixi_t1"))
    found += [(s.image, None) for s in validation[:heads]]
    for kind, listing in (("brats", brats_cases), ("wml", wml_cases)):
        for subject in listing(data / "lesions" / ("brats2013" if kind == "brats" else "wml10"))[:lesions]:
            link = work / f"{kind}_{subject.id}.nii.gz"
            link.symlink_to(subject.image)
            found.append((link, subject.lesion_mask))
    return found


def lesion_auprc(anomaly_map: np.ndarray, brain: np.ndarray, truth_path: Path | None) -> float:
    """AUPRC of the map over brain voxels against the lesion truth (any label > 0), NaN without one."""
    if truth_path is None:
        return float("nan")
    truth = sitk.ReadImage(str(truth_path))
    if truth.GetDimension() == 4:
        truth = truth[:, :, :, 0]
    inside = brain > 0
    return auprc(anomaly_map[inside], sitk.GetArrayFromImage(truth)[inside] > 0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("UADC_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--heads", type=int, default=4, help="IXI validation heads")
    parser.add_argument("--lesions", type=int, default=2, help="BraTS and WML cases (each)")
    parser.add_argument("--code", type=Path, default=CODE, help="folder holding the UADContrastiveLib to run")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    print(f"code: {CODE}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        inputs = cases(args.data, work, args.heads, args.lesions)
        log = io.StringIO()  # the progress bars; only uadc's own lines (warnings, errors) are shown
        with contextlib.redirect_stderr(log):
            code = cli.main(["detect", *(str(p) for p, _ in inputs), "--out-dir", str(work / "out"), "--no-overview"])
        print("".join(line for line in log.getvalue().splitlines(keepends=True) if line.startswith("uadc:")), end="")
        if code:
            return code
        failures, brain_dices, auprcs = 0, [], []
        for path, truth in inputs:
            stem = path.name.split(".")[0]
            arrays = {key: sitk.GetArrayFromImage(sitk.ReadImage(str(work / "out" / stem / name)))
                      for key, name in OUTPUTS.items()}
            arrays["auprc"] = np.float64(lesion_auprc(arrays["anomaly_map"], arrays["brain_mask"], truth))
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(args.save / f"{stem}.npz", **arrays)
                print(f"saved {stem}: lesion AUPRC {float(arrays['auprc']):.4f}")
                continue
            reference = np.load(args.compare / f"{stem}.npz")
            input_range = float(np.ptp(reference["healthy"])) or 1.0
            map_diff = float(np.abs(arrays["anomaly_map"] - reference["anomaly_map"]).max())
            healthy_diff = float(np.abs(arrays["healthy"] - reference["healthy"]).max()) / input_range
            mask_dice = dice(arrays["anomaly_mask"], reference["anomaly_mask"])
            brain_dice = dice(arrays["brain_mask"], reference["brain_mask"])
            ok = map_diff <= MAP_TOLERANCE and healthy_diff <= HEALTHY_TOLERANCE and brain_dice == 1.0
            failures += not ok
            brain_dices.append(brain_dice)
            lesion = ""
            if truth is not None:
                auprcs.append((float(reference["auprc"]), float(arrays["auprc"])))
                lesion = f", lesion AUPRC {auprcs[-1][0]:.4f} -> {auprcs[-1][1]:.4f}"
            print(f"{'ok  ' if ok else 'DIFF'} {stem}: map max |diff| {map_diff:.2e}, healthy max |diff| "
                  f"{healthy_diff:.2e} of range, anomaly-mask Dice {mask_dice:.4f}, "
                  f"brain-mask Dice {brain_dice:.4f}{lesion}")
        if brain_dices:
            before, after = np.mean(auprcs, axis=0) if auprcs else (float("nan"),) * 2
            print(f"mean brain-mask Dice vs reference {np.mean(brain_dices):.4f} (min {np.min(brain_dices):.4f}); "
                  f"mean lesion AUPRC {before:.4f} -> {after:.4f} over {len(auprcs)} cases")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
