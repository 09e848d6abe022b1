"""`uadc evaluate`: run detection on cases with lesion masks and score the maps."""
from __future__ import annotations

import time
from pathlib import Path

import SimpleITK as sitk

from .detect import Detector, parse_threshold
from .errors import InputError
from .evaluate import evaluate_case, read_cases_csv, write_evaluation_report
from .io import read_mask, read_volume, same_grid
from .outputs import check_output_root
from .progress import Progress


def read_lesion_mask(path: Path, image: sitk.Image):
    """Lesion mask as bool (z, y, x); an all-zero mask is a valid healthy case."""
    mask = read_volume(path, allow_constant=True)
    if not same_grid(mask, image):
        raise InputError(path, "is on a different grid than its image.", "Give the lesion mask on the image's grid.")
    return sitk.GetArrayFromImage(mask) > 0


def evaluate_cases(detector: Detector, cases: list[dict], dataset: str, threshold: float | None = None,
                   min_size: float | None = None, progress=None) -> tuple[list[dict], list[dict]]:
    """Detection + metrics for every case: (rows, refused cases). One refused case must not lose
    the others' figures."""
    rows, failures = [], []
    for index, case in enumerate(cases):
        start = time.perf_counter()
        image = read_volume(case["image"])
        brain_mask = read_mask(case["brain_mask"], image) if case.get("brain_mask") else None
        lesion = read_lesion_mask(case["lesion_mask"], image)

        def report(_stage, fraction, _message="", done=index, name=case["id"]):
            if progress:
                progress("evaluate", (done + fraction) / len(cases), name)

        try:
            detection = detector.run(image, brain_mask, threshold, min_size, progress=report,
                                     source=case["image"])
        except InputError as error:
            if progress:
                progress.log(f"uadc: error: {error}")
            failures.append({"id": case["id"], "error": str(error)})
            continue
        brain = sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0
        row = evaluate_case(sitk.GetArrayFromImage(detection.anomaly_map), lesion, brain, detection.threshold,
                            image.GetSpacing(), detection.min_size_mm3)
        rows.append({"id": case["id"], "dataset": case.get("dataset") or dataset,
                     "model": detector.card.get("name"), "seconds": round(time.perf_counter() - start, 1), **row})
    return rows, failures


def run_evaluate(args) -> int:
    progress = Progress()
    if getattr(args, "protocol", None):
        from .evaluation_protocol import run_protocol

        def cases_of(detector, cases, dataset):
            return evaluate_cases(detector, cases, dataset, None, args.min_size, progress)[0]

        result = run_protocol(args.models or ["contrastive-diffusion-t1", "zscore-atlas-t1"], Path(args.protocol),
                              check_output_root(Path(args.out_dir)), args.part, cases_of, args.device,
                              log=progress.log)
        progress.close()
        print((Path(result["out_dir"]) / "table.md").read_text(encoding="utf-8"))
        return 0
    if not args.cases:
        raise InputError(None, "give --cases CSV, or --protocol DATA to run the evaluation protocol.")
    cases = read_cases_csv(Path(args.cases))
    out_dir = check_output_root(Path(args.out_dir))
    detector = Detector(args.model, args.device)
    threshold = parse_threshold(args.threshold)
    rows, failures = evaluate_cases(detector, cases, Path(args.cases).stem, threshold, args.min_size, progress)
    progress.close()
    notes = args.notes or f"cases from {args.cases}"
    if failures:
        notes += " Refused cases (not in the figures): " + "; ".join(f"{f['id']}: {f['error']}" for f in failures)
    if rows:
        write_evaluation_report(rows, out_dir, args.title, notes)
        print(f"wrote metrics.csv, metrics.json, report.md to {out_dir}")
    return 2 if failures else 0
