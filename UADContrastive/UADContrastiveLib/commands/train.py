"""`uadc train --engine NAME --data IXI_DIR --out MODEL_DIR [--config RECIPE]`: train (or fit)
an engine and write its model folder. The engine comes from --engine, else the recipe's
`engine` entry, else contrastive_diffusion."""
from __future__ import annotations

import json
import os


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train an engine (the diffusion model, or fit the z-score atlas)")
    p.add_argument("--engine", default=None,
                   help="contrastive_diffusion (default) or zscore_atlas; see engines/registry.py")
    p.add_argument("--data", required=True, help="IXI folder (images/, brain_parcellation/)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--stage", default="all", choices=["encoder", "diffusion", "all"],
                   help="contrastive_diffusion only: which stage to run")
    p.add_argument("--config", default=None, help="YAML/JSON recipe (default: the shipped train_config.yaml)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def run(args) -> int:
    from ..engines.registry import DEFAULT_TRAINING_ENGINE, ENGINES, trainer
    from ..errors import InputError
    from ..training.config import load_config

    config = load_config(args.config)
    engine = args.engine or config.get("engine") or DEFAULT_TRAINING_ENGINE
    if engine not in ENGINES:
        raise InputError(None, f"--engine {engine!r} is not an engine (known: {', '.join(sorted(ENGINES))}).")
    summary = trainer(engine)(config, args.data, args.out, stage=args.stage or "all", resume=bool(args.resume),
                              device=args.device or "auto")
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2, default=str))
    return 0
