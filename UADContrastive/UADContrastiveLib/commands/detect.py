"""`uadc detect INPUT... --out-dir DIR`: every output of DESIGN section 3 for each input, in
DIR/<stem>/ (names in outputs.names), plus a run summary. Several inputs share one loaded model."""
from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path

from .. import protocol
from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError


def add_parser(sub) -> None:
    p = sub.add_parser("detect", help="detect anomalies in one or more volumes")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file (NIfTI, NRRD, MHA...) or DICOM folder")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--model", default=None, help="installed model name or model folder (default: shipped model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threshold", default="auto", help="'auto' (the card's calibrated default) or a number")
    p.add_argument("--min-size", type=float, default=None, metavar="MM3",
                   help="drop anomalous components smaller than this (mm^3; default: the size the card's "
                        "thresholds were calibrated with)")
    p.add_argument("--brain-mask", default=None, help="brain mask on the input grid (skips skull stripping); one input only")
    p.add_argument("--uncertainty", action="store_true", help="also write uncertainty.nii.gz (K stochastic reconstructions)")
    p.add_argument("--samples", type=int, default=4, help="reconstructions drawn for --uncertainty")
    p.add_argument("--overwrite", action="store_true", help="replace results already in DIR/<stem>")
    p.add_argument("--json-progress", action="store_true", help="one JSON object per line on stdout")
    p.add_argument("--no-overview", action="store_true", help="skip overview.png")


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


def load_detector(model, device: str, progress, lean_imports: bool = False, overview: bool = True, **fields):
    """A freshly loaded model, for one run of the command (`fields`: extras for the progress record).

    The model (torch, MONAI, weights: the slowest part of start-up) loads in a thread while the
    image libraries are imported and the first input is read and registered (they need no torch).
    lean_imports: MONAI without its optional packages (see Detector), for a process that ends
    after detecting. overview: whether overview.png will be drawn (then matplotlib is imported
    early, see below)."""
    from ..detection.detector import Detector

    progress(protocol.LOAD_MODEL, 0.0, "loading the model", **fields)
    detector = Detector(model, device, background=True, lean_imports=lean_imports)
    # The overview's matplotlib (0.4 s to import; no longer brought in by MONAI's lean import)
    # is imported by the loading thread once the model is in, beside the registration or the
    # network, instead of at the write stage, after them.
    if overview:
        detector.after_load(lambda: importlib.import_module(f"{__package__.rpartition('.')[0]}.outputs.overview"))
    return detector


def run(args, progress=None, detector_source=None) -> int:
    """`progress` and `detector_source(model, device, progress, overview=...)` are given by `uadc worker`, which
    keeps its model loaded between requests; the command itself reports to stdout/stderr and
    loads the model for this run, with lean imports when the process ends with the command
    (`args.process_ends_with_command`, set by the cli: an in-process caller of cli.main may
    need the rest of MONAI later)."""
    from ..io import volume_stem
    from ..outputs.folders import check_output_root
    from ..progress import Progress

    # Only standard-library modules until the model load has started: the checks below need no
    # numpy or SimpleITK, whose imports then run beside the load instead of before it.
    progress = progress or Progress(json_lines=args.json_progress)
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
    if detector_source is None:
        detector_source = functools.partial(
            load_detector, lean_imports=getattr(args, "process_ends_with_command", False))
    detector = detector_source(args.model, args.device, progress, overview=not args.no_overview)
    from ..detection.detector import ModelLoadError
    from ..io import read_mask, read_volume
    from ..outputs.findings import findings_table
    from ..outputs.folders import staged_folder, write_run_summary
    from ..outputs.write import write_detection

    entries, failed, tables = [], 0, {}
    for index, (path, stem) in enumerate(zip(args.inputs, stems)):
        staged = _labelled(progress, f"{stem} ({index + 1}/{len(args.inputs)})")
        try:
            image = read_volume(path)
            mask = read_mask(args.brain_mask, image) if args.brain_mask else None
            detection = detector.run(image, mask, threshold, args.min_size,
                                     args.samples if args.uncertainty else 0, staged, source=path)
            for warning in detection.quality["warnings"]:
                progress.log(f"uadc: warning: {path}: {warning}")
            staged(protocol.WRITE, 0.0)
            with staged_folder(out_root / stem, args.overwrite) as folder:
                report = write_detection(detection, folder, path, overview=not args.no_overview)
            entries.append({"input": str(path), "status": "ok", "output": str(out_root / stem),
                            "components": len(report["components"]),
                            "anomalous_volume_ml": report["anomalous_volume_ml"]})
            tables[str(path)] = findings_table(report["findings"])
        except ModelLoadError as error:  # the model, not this input: nothing can run
            raise error.error from None
        except InputError as error:
            failed += 1
            entries.append({"input": str(path), "status": "error", "error": str(error)})
            progress.log(f"uadc: error: {error}")
    write_run_summary(out_root, "detect", entries)
    if args.json_progress:
        progress(protocol.DONE, 1.0, f"{len(entries) - failed} of {len(entries)} done",
                 outputs={e["input"]: e.get("output") for e in entries}, failed=failed,
                 exit_code=EXIT_BAD_INPUT if failed else EXIT_OK)
    progress.close()
    for entry in entries:
        if entry["status"] == "ok":
            print(f"{entry['input']}: {entry['components']} anomalous region(s), "
                  f"{entry['anomalous_volume_ml']:.2f} mL -> {entry['output']}", file=sys.stderr)
            print("\n".join(f"  {line}" for line in tables[entry["input"]].splitlines()), file=sys.stderr)
    return EXIT_BAD_INPUT if failed else EXIT_OK
