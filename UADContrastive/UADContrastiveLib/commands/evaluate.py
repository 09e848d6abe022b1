"""`uadc evaluate`: run detection on cases with lesion masks and score the maps."""
from __future__ import annotations

import time
from pathlib import Path

from .. import protocol
from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from .detect import parse_threshold


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="AUPRC, AUROC, Dice... on cases with lesion masks")
    p.add_argument("--model", default=None)
    p.add_argument("--cases", help="CSV with columns id,image,lesion_mask[,brain_mask]")
    p.add_argument("--protocol", metavar="DATA", help="run the evaluation protocol on ../shared/data "
                   "(real-shape lesions in held-out IXI heads, WML T1, BraTS T1c, healthy heads) over --models")
    p.add_argument("--models", nargs="*", help="with --protocol: model names or folders "
                   "(default: every shipped model reading --modality, all engines side by side)")
    p.add_argument("--modality", default="T1", choices=["T1", "T2"], type=str.upper,
                   help="with --protocol: the T1 sets (default) or the T2 sets (IXI T2 heads with real lesion "
                        "shapes, WML10 T2 and FLAIR, BraTS FLAIR) for T2 models")
    p.add_argument("--part", default="report", choices=["report", "tuning"],
                   help="with --protocol: the report part (published figures) or the tuning part (choices)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threshold", default="auto")
    p.add_argument("--min-size", type=float, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--title", default="Evaluation")
    p.add_argument("--notes", default="", help="data set notes for the report (modality, real or synthetic lesions)")


def read_lesion_mask(path: Path, image):
    """Lesion mask as bool (z, y, x); an all-zero mask is a valid healthy case."""
    import SimpleITK as sitk

    from ..io import read_volume, same_grid

    mask = read_volume(path, allow_constant=True)
    if not same_grid(mask, image):
        raise InputError(path, "is on a different grid than its image.", "Give the lesion mask on the image's grid.")
    return sitk.GetArrayFromImage(mask) > 0


def evaluate_cases(detector, cases: list[dict], dataset: str, threshold: float | None = None,
                   min_size: float | None = None, progress=None) -> tuple[list[dict], list[dict]]:
    """Detection and metrics for every case: (rows, refused cases). A refused case is logged
    and skipped, so one bad case does not lose the others' figures."""
    import SimpleITK as sitk

    from ..evaluation.scoring import evaluate_case
    from ..io import read_mask, read_volume

    rows, failures = [], []
    for index, case in enumerate(cases):
        start = time.perf_counter()
        image = read_volume(case["image"])
        brain_mask = read_mask(case["brain_mask"], image) if case.get("brain_mask") else None
        lesion = read_lesion_mask(case["lesion_mask"], image)

        def report(_stage, fraction, _message="", done=index, name=case["id"]):
            if progress:
                progress(protocol.EVALUATE, (done + fraction) / len(cases), name)

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
                     "model": detector.card.name, "seconds": round(time.perf_counter() - start, 1), **row})
    return rows, failures


def run(args) -> int:
    from ..detection.detector import Detector
    from ..evaluation.scoring import read_cases_csv, write_evaluation_report
    from ..outputs.folders import check_output_root
    from ..progress import Progress

    if bool(args.cases) == bool(args.protocol):
        raise InputError(None, "give either --cases CSV or --protocol DATA.",
                         "--cases scores your own case list; --protocol DATA runs the published evaluation.")
    progress = Progress()
    if args.protocol:
        from ..evaluation.protocol import run_protocol, shipped_model_names

        def cases_of(detector, cases, dataset):
            return evaluate_cases(detector, cases, dataset, None, args.min_size, progress)

        result = run_protocol(args.models or shipped_model_names(args.modality), Path(args.protocol),
                              check_output_root(Path(args.out_dir)), args.part, cases_of, args.device,
                              log=progress.log, modality=args.modality)
        progress.close()
        print((Path(result["out_dir"]) / "table.md").read_text(encoding="utf-8"))
        return EXIT_OK
    cases = read_cases_csv(Path(args.cases))
    out_dir = check_output_root(Path(args.out_dir))
    detector = Detector(args.model, args.device)
    rows, failures = evaluate_cases(detector, cases, Path(args.cases).stem, parse_threshold(args.threshold),
                                    args.min_size, progress)
    progress.close()
    notes = args.notes or f"cases from {args.cases}"
    if failures:
        notes += " Refused cases (not in the figures): " + "; ".join(f"{f['id']}: {f['error']}" for f in failures)
    if rows:
        write_evaluation_report(rows, out_dir, args.title, notes)
        print(f"wrote metrics.csv, metrics.json, report.md to {out_dir}")
    return EXIT_BAD_INPUT if failures else EXIT_OK
