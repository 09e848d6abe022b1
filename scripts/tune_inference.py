"""Choose a diffusion model's inference settings on the TUNING part only (issue 11).

    python scripts/tune_inference.py --model DIR --cases SETS/tuning_real_shapes.csv [--out FILE.json]

Each tuning case (real lesion shapes in held-out IXI heads, `real_lesions`) is brought onto
the model grid once through the detection path and cached beside the CSV. For every variant
(timesteps x whole-slice or tiled reconstruction) the script fits healthy residual
statistics on training subjects from the slice cache, turns each case's residual into the
filtered z-score map exactly as `uadc detect` does, and scores it on the model grid
(AUPRC and best Dice over brain voxels). Only these tuning figures choose the shipped
settings; the report part is scored once, afterwards, with `uadc evaluate`.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from UADContrastiveLib.datasets import is_validation
from UADContrastiveLib.detection.residual_stats import compute_residual_stats, residual_zscore
from UADContrastiveLib.engines.registry import load_engine
from UADContrastiveLib.evaluation.metrics import auprc, best_dice
from UADContrastiveLib.evaluation.scoring import read_cases_csv
from UADContrastiveLib.io import read_volume
from UADContrastiveLib.preprocess.pipeline import preprocess, resample
from UADContrastiveLib.preprocess.templates import load_template
from UADContrastiveLib.training import slice_cache
from UADContrastiveLib.zoo.card import ModelCard

DEFAULT_VARIANTS = ["t250-500-750 whole", "t500-750-900 whole", "t250-500-750 tiles48", "t500-750-900 tiles48"]
VARIANT_PATTERN = re.compile(r"t(\d+(?:-\d+)*) (whole|tiles(\d+))")


def variant_settings(name: str) -> dict:
    """"t250-500 whole" -> timesteps [250, 500], whole slices; "t250 tiles48" -> 48 px tiles, stride 48."""
    match = VARIANT_PATTERN.fullmatch(name)
    if match is None:
        raise SystemExit(f"variant {name!r} is not of the form 't250-500-750 whole' or 't250 tiles48'")
    patch = int(match.group(3) or 0)
    return {"timesteps": [int(t) for t in match.group(1).split("-")], "patch_size": patch, "patch_stride": patch}


def model_grid_case(case: dict, template, cache: Path) -> dict:
    path = cache / f"{case['id']}.npz"
    if not path.exists():
        image = read_volume(case["image"])
        pre = preprocess(image, template, source=str(case["image"]))
        lesion = read_volume(case["lesion_mask"], allow_constant=True)
        lesion_model = resample(sitk.Cast(lesion > 0, sitk.sitkFloat32), pre.model_input, pre.transform) > 0.5
        np.savez_compressed(path, volume=sitk.GetArrayFromImage(pre.model_input),
                            brain=sitk.GetArrayFromImage(pre.brain_mask_model) > 0,
                            lesion=sitk.GetArrayFromImage(lesion_model) > 0)
    with np.load(path) as data:
        return {"id": case["id"], "volume": data["volume"], "brain": data["brain"], "lesion": data["lesion"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--cases", required=True, type=Path)
    parser.add_argument("--stats-subjects", type=int, default=8)
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cache = args.cases.parent / "model_grid"
    cache.mkdir(exist_ok=True)
    template = load_template()
    cases = [model_grid_case(c, template, cache) for c in read_cases_csv(args.cases)]
    training = sorted(p.stem for p in slice_cache.default_cache_dir().glob("IXI*.npz") if not is_validation(p.stem))
    healthy = [slice_cache.load_subject(s) for s in training[:args.stats_subjects]]
    base = load_engine(args.model, "cpu")
    post = ModelCard.read(args.model).postprocess
    results = {}
    for name in args.variants:
        engine = copy.copy(base)
        engine.inference = {**base.inference, **variant_settings(name)}
        start = time.perf_counter()
        stats = compute_residual_stats(engine, healthy)
        rows = []
        for case in cases:
            healthy_recon = engine.reconstruct(case["volume"], case["brain"])
            z = residual_zscore(engine.residual(case["volume"], healthy_recon), stats)
            anomaly = post.filter_map(z, case["brain"], spacing_mm=template.grid.spacing)
            scores, labels = anomaly[case["brain"]], case["lesion"][case["brain"]]
            rows.append({"id": case["id"], "auprc": round(auprc(scores, labels), 4),
                         "best_dice": round(best_dice(scores, labels)[0], 4)})
        seconds = time.perf_counter() - start
        results[name] = {"auprc": round(float(np.mean([r["auprc"] for r in rows])), 4),
                         "best_dice": round(float(np.mean([r["best_dice"] for r in rows])), 4),
                         "seconds": round(seconds, 1), "cases": rows}
        print(f"{name}: AUPRC {results[name]['auprc']:.4f}, best Dice {results[name]['best_dice']:.4f} "
              f"({seconds:.0f} s)", flush=True)
    document = {"model": str(args.model), "cases": str(args.cases), "stats_subjects": training[:args.stats_subjects],
                "postprocess": post.to_dict(), "variants": results,
                "what": "tuning part: real lesion shapes in held-out IXI heads (T1 appearance), model grid, "
                        "filtered residual z-score maps as in uadc detect"}
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
