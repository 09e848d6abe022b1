"""Brain-mask Dice of the detection path per contrast, and the contrast figures the modality
check uses (template correlation, white/grey and CSF/grey ratios).

For each scan with a reference brain mask (WML10 T1/T2/FLAIR/PD, BraTS FLAIR/T1c, IXI T1 with
DLMUSE) it prints:
  detect_dice     Dice of the mask `uadc detect` uses (the preprocess path, brain mask not given)
  template_dice   Dice of the template brain carried back through that same registration:
                  how well the contrast registers to the T1 template (Mattes mutual information)
Usage: python Testing/benchmarks/bench_brain_mask_contrasts.py [--data ../shared/data] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def measure(image_path: Path, mask_path: Path, template) -> dict:
    from UADContrastiveLib.io import read_mask, read_volume
    from UADContrastiveLib.preprocess.pipeline import preprocess
    from UADContrastiveLib.preprocess.quality import (
        _template_regions,
        contrast_ratios,
        correlation_ratio,
    )
    from UADContrastiveLib.preprocess.registration import resample

    image = read_volume(image_path)
    reference = sitk.GetArrayFromImage(read_mask(mask_path, image)) > 0
    start = time.perf_counter()
    pre = preprocess(image, template, source=image_path)
    seconds = time.perf_counter() - start
    detect_mask = sitk.GetArrayFromImage(pre.brain_mask_input) > 0
    carried = resample(template.brain_probability, image, pre.transform.GetInverse())
    template_mask = sitk.GetArrayFromImage(carried) > 0.5
    volume = sitk.GetArrayFromImage(pre.model_input)
    subject = sitk.GetArrayFromImage(pre.brain_mask_model) > 0
    brain, inside, *_ = _template_regions(template)
    both = inside & subject
    correlation = float(np.corrcoef(volume[both], brain[both])[0, 1])
    return {"detect_dice": round(dice(detect_mask, reference), 3),
            "template_dice": round(dice(template_mask, reference), 3),
            "brain_source": pre.brain_source.split(" (")[0], "correlation": round(correlation, 3),
            "correlation_ratio": round(correlation_ratio(volume[both], brain[both]), 3),
            **{k: round(v, 3) for k, v in contrast_ratios(volume, subject, template).items()},
            "seconds": round(seconds, 1)}


def cases(data: Path, limit: int):
    wml = sorted(p for p in (data / "lesions" / "wml10").iterdir() if p.is_dir())[:limit]
    for contrast in ("t1", "t2", "flair", "pd"):
        for case in wml:
            yield f"wml10_{contrast}", case.name, case / f"{contrast}.nii.gz", case / "brain_mask.nii.gz"
    brats = sorted(p for p in (data / "lesions" / "brats2013").iterdir() if p.is_dir())[:limit]
    for contrast in ("flair", "t1c"):
        for case in brats:
            yield f"brats_{contrast}", case.name, case / f"{contrast}.nii.gz", case / "brain_mask.nii.gz"
    ixi = sorted((data / "ixi_t1" / "images").glob("*_T1.nii.gz"))[: min(limit, 4)]
    for image in ixi:
        subject = image.name[: -len("_T1.nii.gz")]
        yield "ixi_t1", subject, image, data / "ixi_t1" / "brain_parcellation" / f"{subject}_T1_DLMUSE.nii.gz"


def main(argv=None) -> int:
    from UADContrastiveLib.preprocess.templates import load_template

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--limit", type=int, default=10, help="cases per data set")
    parser.add_argument("--sets", default="", help="comma-separated sets to run (default: all)")
    args = parser.parse_args(argv)
    template = load_template()
    rows: dict[str, list[dict]] = {}
    for group, case, image, mask in cases(args.data, args.limit):
        if args.sets and group not in args.sets.split(","):
            continue
        row = {"case": case, **measure(image, mask, template)}
        rows.setdefault(group, []).append(row)
        print(json.dumps({"set": group, **row}), flush=True)
    print("\nset            n  detect_dice     template_dice   correlation  eta    wm/gm  csf/gm")
    for group, items in rows.items():
        def stat(key, items=items):
            values = np.array([r[key] for r in items], float)
            return f"{np.mean(values):.3f} ({values.min():.2f}-{values.max():.2f})"
        print(f"{group:13s} {len(items):2d}  {stat('detect_dice'):15s} {stat('template_dice'):15s} "
              f"{np.mean([r['correlation'] for r in items]):+.3f}       "
              f"{np.mean([r['correlation_ratio'] for r in items]):.3f}  "
              f"{np.mean([r['wm_gm_ratio'] for r in items]):.2f}   {np.mean([r['csf_gm_ratio'] for r in items]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
