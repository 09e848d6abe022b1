"""`uadc` command line (also `python -m UADContrastiveLib`).

Exit codes: 0 ok, 2 bad input or usage (message names the file and the problem),
1 internal error. Heavy imports (torch, MONAI) happen inside the commands.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback

from .errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="detect anomalies in one or more volumes")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file (NIfTI, NRRD, MHA...) or DICOM folder")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--model", default=None, help="installed model name or model folder (default: shipped model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threshold", default="auto", help="'auto' (the card's calibrated default) or a number")
    p.add_argument("--min-size", type=float, default=None, metavar="MM3",
                   help="drop anomalous components smaller than this (mm^3; default from the card)")
    p.add_argument("--brain-mask", default=None, help="brain mask on the input grid (skips skull stripping); one input only")
    p.add_argument("--uncertainty", action="store_true", help="also write uncertainty.nii.gz (K stochastic reconstructions)")
    p.add_argument("--samples", type=int, default=4, help="reconstructions drawn for --uncertainty")
    p.add_argument("--overwrite", action="store_true", help="replace results already in DIR/<stem>")
    p.add_argument("--json-progress", action="store_true", help="one JSON object per line on stdout")
    p.add_argument("--no-overview", action="store_true", help="skip overview.png")


def _add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="register, skull-strip and normalise onto the model grid")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--brain-mask", default=None)
    p.add_argument("--skull-stripped", default="auto", choices=["auto", "yes", "no"])
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json-progress", action="store_true")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the contrastive encoder and/or the conditional diffusion model")
    p.add_argument("--data", required=True, help="IXI folder (images/, brain_parcellation/)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--stage", default="all", choices=["encoder", "diffusion", "all"])
    p.add_argument("--config", default=None, help="YAML/JSON config (default: the shipped train_config.yaml)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="store healthy-FPR (or Dice-optimal) thresholds in a model card")
    p.add_argument("--model", required=True)
    p.add_argument("--healthy", help="folder of healthy scans (or the IXI folder: its validation split is used)")
    p.add_argument("--labelled", help="CSV (id,image,lesion_mask[,brain_mask]) for the Dice-optimal rule")
    p.add_argument("--residual-stats", metavar="IXI_DIR",
                   help="first fit healthy residual statistics on IXI training subjects (maps become z-scores)")
    p.add_argument("--residual-subjects", type=int, default=20, help="training subjects for --residual-stats")
    p.add_argument("--min-size", type=float, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, default=None, help="use at most this many scans")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="AUPRC, AUROC, Dice... on cases with lesion masks")
    p.add_argument("--model", default=None)
    p.add_argument("--cases", help="CSV with columns id,image,lesion_mask[,brain_mask]")
    p.add_argument("--protocol", metavar="DATA", help="run the evaluation protocol on ../shared/data "
                   "(real-shape lesion sets, WML T1, BraTS T1c, healthy heads) over --models")
    p.add_argument("--models", nargs="*", help="with --protocol: model names or folders")
    p.add_argument("--part", default="report", choices=["report", "tuning"],
                   help="with --protocol: the report part (published figures) or the tuning part")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threshold", default="auto")
    p.add_argument("--min-size", type=float, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--title", default="Evaluation")
    p.add_argument("--notes", default="", help="data set notes for the report (modality, real or synthetic lesions)")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list, inspect, verify or import models")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list")
    info = msub.add_parser("info")
    info.add_argument("name")
    verify = msub.add_parser("verify")
    verify.add_argument("--model", default=None)
    imp = msub.add_parser("import", help="import a model folder or .zip into the per-user cache (offline)")
    imp.add_argument("source")
    dl = msub.add_parser("download", help="download a model listed in a registry by URL, verified by sha256")
    dl.add_argument("url")
    dl.add_argument("--sha256", required=True)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the embedded example: MNI152 brain with a synthetic lesion")
    p.add_argument("--out-dir", default="demo-output")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--model", default=None)


def _add_template(sub) -> None:
    p = sub.add_parser("template", help="(maintainers) rebuild the whole-head template from IXI training subjects")
    p.add_argument("--data", required=True)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--out", default=None)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="uadc", description="Unsupervised anomaly detection in brain MRI.")
    parser.add_argument("--version", action="version", version=f"uadc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_detect, _add_preprocess, _add_train, _add_calibrate, _add_evaluate, _add_models,
                _add_demo, _add_template):
        add(sub)
    return parser


def _dispatch(args) -> int:
    if args.command == "detect":
        from .detect import run_detect
        return run_detect(args)
    if args.command == "preprocess":
        from .preprocess_command import run_preprocess
        return run_preprocess(args)
    if args.command == "train":
        from .train import main_train
        return main_train(args) or 0
    if args.command == "calibrate":
        from .calibrate import run_calibrate
        return run_calibrate(args)
    if args.command == "evaluate":
        from .evaluate_command import run_evaluate
        return run_evaluate(args)
    if args.command == "models":
        from .models_command import run_models
        return run_models(args)
    if args.command == "demo":
        from .demo import run_demo
        return run_demo(args)
    if args.command == "template":
        from .templates import run_template
        return run_template(args)
    raise AssertionError(args.command)


def _exit_on_sigterm(signum, _frame):
    """Turn SIGTERM (Cancel in Slicer, a job scheduler) into SystemExit, so every `finally`
    runs and staged outputs are removed instead of left half-written."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_BAD_INPUT if exit_.code not in (0, None) else EXIT_OK
    try:
        return _dispatch(args)
    except InputError as error:
        _report_error(args, str(error), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _report_error(args, "interrupted; no partial outputs were left.", EXIT_INTERNAL)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence turns a crash into exit 1
        traceback.print_exc(file=sys.stderr)
        _report_error(args, f"internal error: {error}. Please report it with the traceback above.", EXIT_INTERNAL)
        return EXIT_INTERNAL


def _report_error(args, message: str, code: int) -> None:
    if getattr(args, "json_progress", False):
        print(json.dumps({"stage": "error", "fraction": 1.0, "message": message, "exit_code": code}), flush=True)
    print(f"uadc: error: {message}", file=sys.stderr)
