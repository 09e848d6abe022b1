"""`uadc preprocess`: registration, brain mask and model-grid input, for checking and for tests."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import protocol
from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError


def add_parser(sub) -> None:
    p = sub.add_parser("preprocess", help="register, skull-strip and normalise onto the model grid")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--brain-mask", default=None)
    p.add_argument("--skull-stripped", default="auto", choices=["auto", "yes", "no"])
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json-progress", action="store_true")


def run(args) -> int:
    import SimpleITK as sitk

    from ..io import read_mask, read_volume, volume_stem, write_text, write_volume
    from ..outputs.folders import check_output_root, staged_folder, write_run_summary
    from ..outputs.names import BRAIN_MASK
    from ..preprocess.pipeline import preprocess
    from ..preprocess.templates import load_template
    from ..progress import Progress

    progress = Progress(json_lines=args.json_progress)
    out_root = check_output_root(Path(args.out_dir))
    if args.brain_mask and len(args.inputs) > 1:
        raise InputError(args.brain_mask, "--brain-mask applies to one input; run the inputs one at a time.")
    template = load_template()
    entries, failed = [], 0
    for index, path in enumerate(args.inputs):
        stem = volume_stem(path)
        progress(protocol.PREPROCESS, index / len(args.inputs), stem)
        try:
            start = time.perf_counter()
            image = read_volume(path)
            mask = read_mask(args.brain_mask, image) if args.brain_mask else None
            result = preprocess(image, template, brain_mask=mask, skull_stripped=args.skull_stripped, source=path)
            with staged_folder(out_root / stem, args.overwrite) as folder:
                write_volume(sitk.Cast(result.brain_mask_input, sitk.sitkUInt8), folder / BRAIN_MASK)
                write_volume(result.model_input, folder / "model_input.nii.gz")
                summary = {"input": str(path), "template": template.name, "model_grid": template.grid.to_dict(),
                           **result.summary(), "total_s": round(time.perf_counter() - start, 3)}
                write_text(json.dumps(summary, indent=2), folder / "preprocess.json")
            entries.append({"input": str(path), "status": "ok", "output": str(out_root / stem)})
        except InputError as error:
            failed += 1
            entries.append({"input": str(path), "status": "error", "error": str(error)})
            progress.log(f"uadc: error: {error}")
    progress(protocol.DONE, 1.0, f"{len(entries) - failed} of {len(entries)} preprocessed")
    progress.close()
    write_run_summary(out_root, "preprocess", entries)
    return EXIT_BAD_INPUT if failed else EXIT_OK
