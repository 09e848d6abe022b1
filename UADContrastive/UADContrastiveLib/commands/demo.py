"""`uadc demo`: the embedded example, from nothing but installed packages.

Input: the MNI152 2009a T1 brain shipped in the nilearn wheel (a real, averaged,
skull-stripped brain MRI), with a synthetic hypointense lesion inserted at a known
place in the right frontal white matter. The shipped model then runs on it and the
summary says where the lesion was, what was found, and the Dice overlap.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import EXIT_OK

LESION_CENTER_RAS = (24.0, 18.0, 22.0)  # mm, MNI: right frontal white matter (corona radiata)
LESION_RADIUS_MM = 9.0


def demo_volume(seed: int = 7):
    """(MNI T1 with a synthetic lesion, lesion ground truth) on the MNI template's own 1 mm grid,
    as SimpleITK images."""
    # numpy and SimpleITK here, not at the top: `uadc` imports every command to build its
    # parser, and `uadc detect` starts loading the model only after that.
    import numpy as np
    import SimpleITK as sitk

    from ..io import image_like, read_volume
    from ..preprocess.templates import nilearn_mni_path

    image = read_volume(nilearn_mni_path("t1"))
    array = sitk.GetArrayFromImage(image)
    points = sitk.GetArrayFromImage(sitk.PhysicalPointSource(
        sitk.sitkVectorFloat64, image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()))
    center_lps = np.array([-LESION_CENTER_RAS[0], -LESION_CENTER_RAS[1], LESION_CENTER_RAS[2]])
    rng = np.random.default_rng(seed)
    axes = LESION_RADIUS_MM * rng.uniform(0.8, 1.2, 3)
    distance = np.sqrt((((points - center_lps) / axes) ** 2).sum(-1))
    weight = np.clip((1.15 - distance) / 0.3, 0.0, 1.0)  # 1 in the core, soft 3 mm rim
    white_matter = float(np.percentile(array[array > 0], 95))
    lesion_value = 0.35 * white_matter                     # hypointense, CSF-like on T1
    lesioned = (1 - weight) * array + weight * lesion_value
    lesioned[array == 0] = 0
    truth = ((weight > 0.5) & (array > 0)).astype(np.uint8)
    return image_like(lesioned.astype(np.float32), image), image_like(truth, image)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the embedded example: MNI152 brain with a synthetic lesion")
    p.add_argument("--out-dir", default="demo-output")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--model", default=None)


def run(args) -> int:
    import SimpleITK as sitk

    from ..detection.detector import Detector
    from ..evaluation.metrics import dice
    from ..io import write_text, write_volume
    from ..outputs import names
    from ..outputs.folders import check_output_root, staged_folder
    from ..outputs.write import write_detection
    from ..progress import Progress

    progress = Progress()
    out_root = check_output_root(Path(args.out_dir))
    start = time.perf_counter()
    image, truth = demo_volume()
    detector = Detector(args.model, args.device)
    detection = detector.run(image, progress=progress, source="MNI152 demo volume")
    with staged_folder(out_root / "mni152_demo", overwrite=True) as folder:
        write_volume(image, folder / "demo_input.nii.gz")
        write_volume(truth, folder / "demo_lesion_truth.nii.gz")
        report = write_detection(detection, folder, "MNI152 2009a T1 (nilearn) + synthetic lesion")
        found = sitk.GetArrayFromImage(detection.anomaly_mask) > 0
        truth_array = sitk.GetArrayFromImage(truth) > 0
        score = dice(found, truth_array)
        detected = bool((found & truth_array).any())
        summary = {
            "lesion": {"center_mni_ras_mm": LESION_CENTER_RAS, "volume_ml": round(float(truth_array.sum()) / 1000, 2),
                       "kind": "synthetic, hypointense, right frontal white matter"},
            "found": {"components": len(detection.components), "anomalous_volume_ml": report["anomalous_volume_ml"],
                      "dice": round(score, 3), "lesion_detected": detected, "threshold": detection.threshold},
            "model": detector.card.name, "device": detector.device,
            "seconds": round(time.perf_counter() - start, 1),
        }
        write_text(json.dumps(summary, indent=2), folder / "demo_summary.json")
    progress.close()
    largest = max(detection.components, key=lambda c: c["volume_ml"], default=None)
    print("\nUADContrastive demo (MNI152 T1 from the nilearn package, synthetic lesion)")
    print(f"  inserted lesion : {summary['lesion']['volume_ml']} mL at MNI (x, y, z) = {LESION_CENTER_RAS} mm (right frontal white matter)")
    print(f"  detected        : {len(detection.components)} region(s), {report['anomalous_volume_ml']:.2f} mL in total"
          + (f"; largest {largest['volume_ml']:.2f} mL" if largest else ""))
    print(f"  overlap         : Dice {score:.2f} with the inserted lesion ({'found' if detected else 'missed'})")
    print(f"  threshold       : {detection.threshold:.4g} ({detection.threshold_method})")
    print(f"  outputs         : {out_root / 'mni152_demo'} "
          f"({names.HEALTHY}, {names.ANOMALY_MAP}, {names.SEGMENTATION}, {names.OVERVIEW})")
    print(f"  time            : {summary['seconds']} s on {detector.device}")
    for warning in detection.quality.get("warnings", []):
        print(f"  warning         : {warning}")
    return EXIT_OK
