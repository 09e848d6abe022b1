"""`uadc train --data PATH --out MODEL_DIR [--modality T1] [--engine NAME] [--config RECIPE]`:
train (or fit) an engine on a healthy cohort and write a complete, calibrated model folder.

PATH is a folder of scans (searched recursively, DICOM series folders included), a CSV
(`image[,brain_mask][,subject]`) or the IXI folder (training.cohort). Every scan goes through
detection's preprocessing; the ones detection would refuse are reported and skipped. After
training, healthy statistics and healthy-FPR thresholds are fitted through the detection path
on scans held out of training (training.calibration) unless --no-calibrate; the folder
then passes `uadc models verify` and installs with `uadc models import`. The engine comes from
--engine, else the recipe's `engine` entry, else contrastive_diffusion.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import EXIT_OK

MODALITIES = ("T1", "T1c", "T2", "FLAIR", "PD", "DWI", "other")
STATE_RECIPE = "recipe.yaml"  # the full recipe of a training-state folder, so --resume DIR needs no --config


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
                        "(mad_ad, latent_ddpm; they share one autoencoder, trained in its own state folder that "
                        "their recipes name as autoencoder_state)")
    p.add_argument("--config", default=None, help="YAML/JSON recipe (default: the shipped train_config.yaml)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="STATE",
                   help="continue from the checkpoints: without STATE those of the last run with this --out "
                        "(in the user cache or the recipe's checkpoint_dir); with STATE, a training-state "
                        "folder (e.g. training-state/contrastive-diffusion-t1, copied from another machine): "
                        "its recipe.yaml is the recipe unless --config is given")
    p.add_argument("--state", default=None, metavar="DIR",
                   help="keep the checkpoints and the recipe in DIR (a training-state folder to commit or copy, "
                        "resumed with --resume DIR) instead of the user cache")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for this run (default: the recipe's). On a CPU shared with other "
                        "work, 1 thread trains several times faster than 2 threads waiting on each other")
    p.add_argument("--session-minutes", type=float, default=None,
                   help="stop this run after this many minutes even if the recipe's budget is not spent; the "
                        "state and the model folder are written as at the end (Ctrl+C or SIGTERM does the same)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip residual statistics and thresholds (run `uadc calibrate` later)")
    p.add_argument("--calibration-scans", type=int, default=None,
                   help="use at most this many held-out scans for the statistics and thresholds (default: all)")


def _stage_choices() -> list[str]:
    from ..engines.registry import ENGINES

    return list(dict.fromkeys(stage for entry in ENGINES.values() for stage in entry.stages))


def _modality(value: str) -> str:
    known = {m.upper(): m for m in MODALITIES}
    return known.get(value.upper(), value)


def training_state_dir(args) -> Path | None:
    """The training-state folder of this run: --state DIR, else --resume DIR, else none (user cache)."""
    if args.state:
        return Path(args.state)
    if isinstance(args.resume, str):
        if not Path(args.resume).is_dir():
            from ..errors import InputError

            raise InputError(args.resume, "is not a training-state folder.",
                             "Give the folder a run made with --state DIR, or --resume alone.")
        return Path(args.resume)
    return None


def write_state_recipe(state_dir: Path, config: dict) -> None:
    """The run's full recipe beside its checkpoints (atomically), so the folder alone resumes it."""
    import yaml

    from ..io import atomic_path

    state_dir.mkdir(parents=True, exist_ok=True)
    recipe = {k: v for k, v in config.items() if k not in ("checkpoint_dir", "cache_dir")}
    with atomic_path(state_dir / STATE_RECIPE) as tmp:
        Path(tmp).write_text(yaml.safe_dump(recipe, sort_keys=False))


def stop_cleanly_on_signals() -> None:
    """SIGTERM/SIGINT end the training at the next step with its state and model folder written
    (a second signal stops at once)."""
    import signal

    from ..training.loop import StopRequest

    def request_stop(signum, frame):
        if StopRequest.requested:
            raise KeyboardInterrupt
        StopRequest.requested = True
        print(f"signal {signum}: stopping after this step; writing the training state", flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)


def run(args) -> int:
    from ..engines.registry import DEFAULT_TRAINING_ENGINE, ENGINES, entry, trainer
    from ..errors import InputError
    from ..training.config import load_config
    from ..training.loop import StopRequest

    if args.config and not Path(args.config).is_file():
        raise InputError(args.config, "does not exist.", "Give a YAML recipe, e.g. one of Resources/Models/recipes/.")
    import yaml

    state_dir = training_state_dir(args)
    recipe = args.config
    if recipe is None and state_dir is not None and (state_dir / STATE_RECIPE).is_file():
        recipe = str(state_dir / STATE_RECIPE)
    try:
        config = load_config(recipe)
        recipe_name = (yaml.safe_load(Path(recipe).read_text()) or {}).get("name") if recipe else None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        raise InputError(recipe, f"is not a readable YAML recipe ({error}).") from None
    if state_dir is not None:
        config["checkpoint_dir"] = str(state_dir)
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
    # the outermost folder this run creates for its state, removed again if the run is refused
    created = next((f for f in reversed([state_dir, *state_dir.parents]) if not f.exists()), None) if state_dir else None
    main_process = int(os.environ.get("RANK", "0")) == 0
    if state_dir is not None and main_process:
        write_state_recipe(state_dir, {**config, "engine": engine})
    if args.threads:  # this run's machine, not the recipe: kept out of the state's recipe.yaml
        config["threads"] = args.threads
    StopRequest.limit_session(args.session_minutes)
    stop_cleanly_on_signals()
    try:
        summary = trainer(engine)(config, args.data, args.out, stage=stage, resume=bool(args.resume),
                                  device=args.device or "auto")
    except InputError:
        if created is not None and main_process:
            import shutil

            shutil.rmtree(created, ignore_errors=True)
        raise
    # a run on config['subjects'] (an already built cache) has no cohort to calibrate on; a run that
    # wrote no model folder (a stage before the last, or one stopped before it) has nothing to calibrate
    cohort_listed = not config.get("subjects")
    if main_process and args.calibrate and cohort_listed and "model_dir" in summary:
        from ..training.calibration import calibrate_on_cohort

        summary["thresholds"] = calibrate_on_cohort(Path(args.out), Path(args.data), args.device,
                                                    limit=args.calibration_scans)
        summary["next"] = f"uadc models verify --model {args.out} && uadc models import {args.out}"
    if main_process:
        print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK
