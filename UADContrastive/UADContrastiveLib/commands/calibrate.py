"""`uadc calibrate`: healthy statistics and thresholds without lesion labels, or Dice-optimal ones.

--statistics DATA: fit the model's healthy statistics on healthy scans it was not trained on
(the card's statistics cohort when DATA is the training cohort) and the thresholds that flag
1 %, 0.5 % and 0.1 % of healthy brain voxels (postprocess.presets) on the same scans scored
leave-one-out, after filtering and the minimum component size, which is stored with them:
detection then uses the same size. --healthy DATA: thresholds only, on further unseen scans.
Labelled rule (the paper's): the threshold maximising Dice on a labelled validation set.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import EXIT_OK, InputError
from ..protocol import CALIBRATION_LABELLED


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="store healthy-FPR (or Dice-optimal) thresholds in a model card")
    p.add_argument("--model", required=True)
    p.add_argument("--healthy", help="thresholds only, on healthy scans that served neither training nor the "
                   "statistics: a folder, CSV or the IXI folder (the validation scans of the model's own split when "
                   "it names them, the IXI validation split, else every scan)")
    p.add_argument("--labelled", help="CSV (id,image,lesion_mask[,brain_mask]) for the Dice-optimal rule")
    p.add_argument("--statistics", metavar="DATA",
                   help="fit healthy statistics and thresholds (leave-one-out) on healthy scans the model was not "
                        "trained on: the card's statistics cohort when DATA is the cohort it was trained on, else "
                        "DATA's scans outside the model's training split (a folder of unseen scans: all of them)")
    p.add_argument("--min-size", type=float, default=None, metavar="MM3",
                   help="minimum component size to calibrate for; stored in the card, used by detect")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, default=None, help="use at most this many scans")


def run(args) -> int:
    import numpy as np
    import SimpleITK as sitk

    from ..datasets import Subject
    from ..detection.detector import Detector
    from ..io import read_mask
    from ..postprocess.calibration import dice_optimal_threshold
    from ..postprocess.presets import DICE_OPTIMAL
    from ..progress import Progress
    from ..training.calibration import (
        calibrate_healthy,
        cohort_parts,
        detect_maps,
        fit_statistics,
        statistics_scans,
    )
    from ..zoo import ModelCard

    if not (args.healthy or args.labelled or args.statistics):
        raise InputError(None, "give --statistics DATA (healthy statistics and thresholds), --healthy DATA "
                         "(thresholds only) and/or --labelled CSV (Dice-optimal rule).")
    progress = Progress()
    detector = Detector(args.model, args.device, statistics_required=False)
    min_size = detector.default_min_size() if args.min_size is None else float(args.min_size)
    if args.statistics:
        scans, rule = statistics_scans(detector.card, Path(args.statistics))
        fit_statistics(detector, scans[: args.limit], min_size, progress, rule)
        detector = Detector(args.model, args.device)  # reload: scored with the new statistics from now on
    if args.healthy:
        _, held_out, rule = cohort_parts(detector.card, Path(args.healthy))
        calibrate_healthy(detector, held_out[: args.limit], min_size, progress, rule)
    card = ModelCard.read(detector.model_dir)
    thresholds = card.thresholds
    if args.labelled:
        from ..evaluation.scoring import read_cases_csv

        start = time.perf_counter()
        cases = {str(c["image"]): c for c in read_cases_csv(Path(args.labelled))[: args.limit]}
        results = detect_maps(detector, [Subject(key, Path(key), c.get("brain_mask")) for key, c in cases.items()],
                              progress, CALIBRATION_LABELLED)
        lesions = [sitk.GetArrayFromImage(read_mask(cases[scan.id]["lesion_mask"], image)) > 0
                   for scan, _, _, image in results]
        candidates = np.quantile(np.concatenate([m[b] for _, m, b, _ in results]), np.linspace(0.9, 0.9999, 200))
        thresholds.values[DICE_OPTIMAL] = float(dice_optimal_threshold(
            [m for _, m, _, _ in results], lesions, [b for _, _, b, _ in results], candidates)[0])
        thresholds.default = thresholds.default or DICE_OPTIMAL
        thresholds.notes["labelled_s"] = round(time.perf_counter() - start, 1)
    thresholds.min_size_mm3 = min_size
    card.write()
    progress.close()
    print(json.dumps(thresholds.values, indent=2))
    return EXIT_OK
