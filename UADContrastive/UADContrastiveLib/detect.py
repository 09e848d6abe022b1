"""`uadc detect`: volume in, healthy reconstruction + anomaly map + segmentation out.

One detection (DESIGN section 2): preprocess onto the model grid -> engine
reconstruction -> residual filtered in the brain -> back onto the input grid ->
threshold + minimum component size -> files. Several inputs share one loaded model.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io import image_like, read_mask, read_volume, volume_stem, write_text, write_volume
from .outputs import check_output_root, staged_folder, write_run_summary
from .preprocess import Preprocessed, preprocess
from .progress import Progress
from .quality import assess_registration, check_spacing
from .residual_stats import STATS_FILE, load_residual_stats, residual_zscore


@dataclass
class Detection:
    """Everything one detection produced, on the input grid (plus the model-grid arrays for the overview)."""

    preprocessed: Preprocessed
    healthy: sitk.Image
    anomaly_map: sitk.Image
    anomaly_mask: sitk.Image
    components: list
    threshold: float
    threshold_method: str
    min_size_mm3: float
    uncertainty: sitk.Image | None
    model_arrays: dict
    timings: dict
    quality: dict


class Detector:
    """A loaded model + template, ready to run on any number of volumes."""

    def __init__(self, model: str | Path | None = None, device: str = "auto"):
        from .engines import load_engine, resolve_device
        from .postprocess import PostprocessConfig
        from .templates import load_template
        from .zoo import read_card, resolve_model

        self.model_dir = resolve_model(model)
        self.card = read_card(self.model_dir)
        self.device = str(resolve_device(device))
        self.engine = load_engine(self.model_dir, self.device)
        self.template = load_template()
        self.postprocess = PostprocessConfig.from_dict(self.card.get("postprocess", {}))
        # files listed in the card were checked against their sha256 by load_engine
        self.residual_stats = load_residual_stats(self.model_dir) if STATS_FILE in self.card["files"] else None

    def default_threshold(self) -> tuple[float, str]:
        thresholds = self.card.get("thresholds") or {}
        key = thresholds.get("default")
        if key and key in thresholds.get("values", {}):
            return float(thresholds["values"][key]), f"calibrated: {key} of healthy brain voxels flagged"
        raise InputError(self.model_dir / "model.json", "has no calibrated threshold.",
                         "Run `uadc calibrate --model ... --healthy DIR`, or pass --threshold VALUE.")

    def default_min_size(self) -> float:
        return float(self.postprocess.min_size_mm3)

    def run(self, image: sitk.Image, brain_mask: sitk.Image | None = None, threshold: float | None = None,
            min_size_mm3: float | None = None, uncertainty_samples: int = 0, progress=None,
            source: str | None = None) -> Detection:
        from .postprocess import threshold_components

        report = progress or (lambda stage, fraction, message="": None)
        timings = {}
        start = time.perf_counter()
        report("preprocess", 0.0, "registration to the template")
        warnings = check_spacing(image, source)
        pre = preprocess(image, self.template, brain_mask=brain_mask, source=source)
        quality = assess_registration(pre, self.template, self.card.get("modality", "T1"), source)
        quality["warnings"] = warnings + quality["warnings"]
        timings["preprocess"] = time.perf_counter() - start

        start = time.perf_counter()
        volume = sitk.GetArrayFromImage(pre.model_input)
        brain = sitk.GetArrayFromImage(pre.brain_mask_model) > 0
        reconstruction_progress = lambda fraction: report("reconstruct", fraction)  # noqa: E731
        spread = None
        if uncertainty_samples > 0:
            healthy, spread = self.engine.reconstruct_with_uncertainty(
                volume, brain, samples=uncertainty_samples, progress=reconstruction_progress)
        else:
            healthy = self.engine.reconstruct(volume, brain, progress=reconstruction_progress)
        timings["reconstruct"] = time.perf_counter() - start

        start = time.perf_counter()
        report("anomaly map", 0.0)
        residual = self.engine.residual(volume, healthy) if hasattr(self.engine, "residual") else volume - healthy
        if self.residual_stats is not None:
            residual = residual_zscore(residual, self.residual_stats)
        model_map = self.postprocess.filter_map(residual, brain, spacing_mm=self.template.grid.spacing)
        brain_input = sitk.GetArrayViewFromImage(pre.brain_mask_input) > 0
        anomaly_map = sitk.GetArrayFromImage(pre.to_input_grid(model_map))
        anomaly_map[~brain_input] = 0.0
        anomaly_map = image_like(anomaly_map.astype(np.float32), image)
        healthy_input = sitk.GetArrayFromImage(pre.to_input_grid(pre.intensity_to_input(healthy)))
        healthy_array = sitk.GetArrayFromImage(image)  # outside the brain the healthy image is the input
        healthy_array[brain_input] = healthy_input[brain_input]
        healthy_image = image_like(healthy_array.astype(np.float32), image)
        uncertainty = None
        if spread is not None:
            spread_input = sitk.GetArrayFromImage(pre.to_input_grid(spread.astype(np.float32)))
            spread_input[~brain_input] = 0.0
            uncertainty = image_like(spread_input.astype(np.float32), image)
        timings["anomaly_map"] = time.perf_counter() - start

        start = time.perf_counter()
        if threshold is None:
            threshold, method = self.default_threshold()
        else:
            method = "given on the command line"
        min_size = self.default_min_size() if min_size_mm3 is None else float(min_size_mm3)
        mask_array, components = threshold_components(
            sitk.GetArrayViewFromImage(anomaly_map), threshold, min_size, image.GetSpacing())
        anomaly_mask = image_like(mask_array.astype(np.uint8), image)
        timings["threshold"] = time.perf_counter() - start
        report("anomaly map", 1.0)
        arrays = {"input": volume, "healthy": healthy, "map": model_map, "brain": brain}
        return Detection(pre, healthy_image, anomaly_map, anomaly_mask, components, float(threshold), method,
                         min_size, uncertainty, arrays, timings, quality)

    def model_summary(self) -> dict:
        from .zoo import sha256_file

        files = self.card.get("files", {})
        return {"name": self.card.get("name"), "version": self.card.get("version"),
                "engine": self.card.get("engine"), "path": str(self.model_dir),
                "sha256": {name: sha256_file(self.model_dir / name) for name in files}}


def write_detection(detection: Detection, folder: Path, detector: Detector, input_path: str,
                    overview: bool = True) -> dict:
    """Write every output of one detection into `folder` (a staging folder)."""
    from .overview import write_overview_png
    from .segmentation import write_segmentation

    write_volume(detection.healthy, folder / "healthy.nii.gz")
    write_volume(detection.anomaly_map, folder / "anomaly_map.nii.gz")
    write_volume(detection.anomaly_mask, folder / "anomaly_mask.nii.gz")
    write_segmentation(detection.anomaly_mask, folder / "anomaly.seg.nrrd")
    write_volume(sitk.Cast(detection.preprocessed.brain_mask_input, sitk.sitkUInt8), folder / "brain_mask.nii.gz")
    if detection.uncertainty is not None:
        write_volume(detection.uncertainty, folder / "uncertainty.nii.gz")
    if overview:
        arrays = detection.model_arrays
        mask_model = sitk.GetArrayFromImage(sitk.Resample(
            detection.anomaly_mask, detection.preprocessed.model_input, detection.preprocessed.transform,
            sitk.sitkNearestNeighbor, 0))
        write_overview_png(arrays["input"], arrays["healthy"], arrays["map"], mask_model, folder / "overview.png",
                           brain=arrays["brain"])
    thresholds = detector.card.get("thresholds") or {}
    report = {
        "input": str(input_path),
        "model": detector.model_summary(),
        "device": detector.device,
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "threshold": {"value": detection.threshold, "method": detection.threshold_method},
        "thresholds_available": thresholds.get("values", {}),
        "min_size_mm3": detection.min_size_mm3,
        "brain": {"source": detection.preprocessed.brain_source,
                  "volume_ml": detection.preprocessed.summary()["brain_volume_ml"]},
        "quality": detection.quality,
        "warnings": detection.quality["warnings"],
        "components": detection.components,
        "anomalous_volume_ml": round(sum(c["volume_ml"] for c in detection.components), 4),
        "preprocessing": detection.preprocessed.summary(),
        "timings_s": {k: round(v, 3) for k, v in detection.timings.items()},
    }
    write_text(json.dumps(report, indent=2, default=float), folder / "report.json")
    return report


def parse_threshold(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(None, f"--threshold must be 'auto' or a number, not {text!r}.") from None


def _labelled(progress, label: str):
    """A progress callback that names the input when the stage gives no message."""
    return lambda stage, fraction, message="": progress(stage, fraction, message or label)


def run_detect(args) -> int:
    progress = Progress(json_lines=args.json_progress)
    threshold = parse_threshold(args.threshold)
    out_root = check_output_root(Path(args.out_dir))
    if args.brain_mask and len(args.inputs) > 1:
        raise InputError(args.brain_mask, "--brain-mask applies to one input; run the inputs one at a time.")
    stems = [volume_stem(p) for p in args.inputs]
    if len(set(stems)) != len(stems):
        raise InputError(None, f"two inputs share an output name ({stems}); run them into different --out-dir.")
    for stem in stems:  # refuse early, before the model loads
        if not args.overwrite and (out_root / stem).exists() and any((out_root / stem).iterdir()):
            raise InputError(out_root / stem, "already holds results.",
                             "Pass --overwrite to replace them, or choose another --out-dir.")
    progress("load model", 0.0, "loading the model")
    detector = Detector(args.model, args.device)
    if detector.device == "cpu":
        progress.log("Running on the CPU: expect about half a minute per volume.")
    entries, failed = [], 0
    for index, (path, stem) in enumerate(zip(args.inputs, stems)):
        staged = _labelled(progress, f"{stem} ({index + 1}/{len(args.inputs)})")
        try:
            image = read_volume(path)
            mask = read_mask(args.brain_mask, image) if args.brain_mask else None
            detection = detector.run(image, mask, threshold, args.min_size,
                                     args.samples if args.uncertainty else 0, staged, source=path)
            for warning in detection.quality["warnings"]:
                progress.log(f"uadc: warning: {path}: {warning}")
            staged("write", 0.0)
            with staged_folder(out_root / stem, args.overwrite) as folder:
                report = write_detection(detection, folder, detector, path, overview=not args.no_overview)
            entries.append({"input": str(path), "status": "ok", "output": str(out_root / stem),
                            "components": len(report["components"]),
                            "anomalous_volume_ml": report["anomalous_volume_ml"]})
        except InputError as error:
            failed += 1
            entries.append({"input": str(path), "status": "error", "error": str(error)})
            progress.log(f"uadc: error: {error}")
    write_run_summary(out_root, "detect", entries)
    if args.json_progress:
        progress("done", 1.0, f"{len(entries) - failed} of {len(entries)} done",
                 outputs={e["input"]: e.get("output") for e in entries}, failed=failed)
    progress.close()
    for entry in entries:
        if entry["status"] == "ok":
            print(f"{entry['input']}: {entry['components']} anomalous region(s), "
                  f"{entry['anomalous_volume_ml']:.2f} mL -> {entry['output']}", file=sys.stderr)
    return 2 if failed else 0
