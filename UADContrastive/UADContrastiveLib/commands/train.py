"""`uadc train --data PATH --out MODEL_DIR [--modality T1] [--engine NAME] [--config RECIPE]`:
train (or fit) an engine on a healthy cohort and write a complete, calibrated model folder.

PATH is a folder of scans (searched recursively, DICOM series folders included), a CSV
(`image[,brain_mask][,subject]`) or the IXI folder (training.cohort). Every scan goes through
detection's preprocessing; the ones detection would refuse are reported and skipped. After
training, residual statistics (training scans) and healthy-FPR thresholds (held-out scans) are
fitted through the detection path (training.calibration) unless --no-calibrate; the folder
then passes `uadc models verify` and installs with `uadc models import`. The engine comes from
--engine, else the recipe's `engine` entry, else contrastive_diffusion.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MODALITIES = ("T1", "T1c", "T2", "FLAIR", "PD", "DWI", "other")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train an engine on healthy scans (the diffusion model, or the z-score atlas)")
    p.add_argument("--engine", default=None,
                   help="contrastive_diffusion (default), zscore_atlas, mad_ad or latent_ddpm; see engines/registry.py")
    p.add_argument("--data", required=True,
                   help="healthy scans: a folder (searched recursively, DICOM series folders included), "
                        "a CSV with columns image[,brain_mask][,subject], or the IXI folder")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--name", default=None,
                   help="model name in the card and the model list (default: the recipe's name with --config, "
                        "else the --out folder's name)")
    p.add_argument("--modality", default=None, type=_modality,
                   help=f"contrast of the scans ({', '.join(MODALITIES)}); recorded in the card, detect warns "
                        "when an input does not look like it (default: the recipe's, else T1)")
    p.add_argument("--stage", default="all", choices=_stage_choices(),
                   help="which stage to run: encoder|diffusion (contrastive_diffusion), autoencoder|denoiser "
                        "(mad_ad, latent_ddpm; their autoencoder is shared through the recipe's autoencoder_path)")
    p.add_argument("--config", default=None, help="YAML/JSON recipe (default: the shipped train_config.yaml)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip residual statistics and thresholds (run `uadc calibrate` later)")
    p.add_argument("--residual-scans", type=int, default=20, help="training scans for the residual statistics")
    p.add_argument("--calibration-scans", type=int, default=None,
                   help="use at most this many held-out scans for the thresholds (default: all)")


def _stage_choices() -> list[str]:
    from ..engines.registry import ENGINES

    return list(dict.fromkeys(stage for entry in ENGINES.values() for stage in entry.stages))


def _modality(value: str) -> str:
    known = {m.upper(): m for m in MODALITIES}
    return known.get(value.upper(), value)


def run(args) -> int:
    from ..engines.registry import DEFAULT_TRAINING_ENGINE, ENGINES, entry, trainer
    from ..errors import InputError
    from ..training.config import load_config

    if args.config and not Path(args.config).is_file():
        raise InputError(args.config, "does not exist.", "Give a YAML recipe, e.g. one of Resources/Models/recipes/.")
    import yaml

    try:
        config = load_config(args.config)
        recipe_name = (yaml.safe_load(Path(args.config).read_text()) or {}).get("name") if args.config else None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        raise InputError(args.config, f"is not a readable YAML recipe ({error}).") from None
    if args.modality:
        config["modality"] = args.modality
    # the shipped defaults carry the shipped model's name; a new model must not take it
    config["name"] = args.name or recipe_name or Path(args.out).name
    engine = args.engine or config.get("engine") or DEFAULT_TRAINING_ENGINE
    if engine not in ENGINES:
        raise InputError(None, f"--engine {engine!r} is not an engine (known: {', '.join(sorted(ENGINES))}).")
    stage = args.stage or "all"
    if stage not in entry(engine).stages:
        raise InputError(None, f"--stage {stage} is not a stage of the {engine} engine "
                         f"(its stages: {', '.join(entry(engine).stages)}).")
    summary = trainer(engine)(config, args.data, args.out, stage=stage, resume=bool(args.resume),
                              device=args.device or "auto")
    main_process = int(os.environ.get("RANK", "0")) == 0
    # a run on config['subjects'] (an already built cache) has no cohort to calibrate on
    cohort_listed = not config.get("subjects")
    if main_process and args.calibrate and cohort_listed and stage in entry(engine).final_stages:
        from ..training.calibration import calibrate_on_cohort

        summary["thresholds"] = calibrate_on_cohort(
            Path(args.out), Path(args.data), args.device, residual_scans=args.residual_scans,
            limit=args.calibration_scans, residual=engine != "zscore_atlas")
        summary["next"] = f"uadc models verify --model {args.out} && uadc models import {args.out}"
    if main_process:
        print(json.dumps(summary, indent=2, default=str))
    return 0
