"""The model folder of a latent engine: `autoencoder.pt` and `denoiser.pt` (state dicts only,
loadable with weights_only=True) and the model card listing their sha256, written last."""
from __future__ import annotations

from pathlib import Path

import torch

from ... import datasets
from ...training.loop import hardware, save_atomic
from ...zoo.card import ModelCard
from ...zoo.registry import sha256_file
from .engine import AUTOENCODER_FILE, DENOISER_FILE, LatentEngine

# recipe keys a latent engine's training reads; the card records these, not the other engines' defaults
RECIPE_KEYS = ("name", "version", "seed", "threads", "min_slice_fraction", "augmentation", "autoencoder",
               "autoencoder_path", "denoiser", "inference", "checkpoint_minutes")


def write_latent_model_folder(out_dir: Path, engine: LatentEngine, config: dict, cohort: dict, training: dict,
                              validation: dict, description: str) -> Path:
    """Weights + card of `engine` (engine.name, engine.network, engine.inference) in `out_dir`."""
    from ...postprocess.filtering import PostprocessConfig
    from ...preprocess.intensity import INTENSITY_PERCENTILES, INTENSITY_RANGE
    from ...preprocess.templates import SHIPPED_TEMPLATE, ModelGrid, load_template

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, module in ((AUTOENCODER_FILE, engine.codec), (DENOISER_FILE, engine.denoiser)):
        # contiguous CPU tensors: the file is the same whatever device or memory format trained it
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_atomic(state, out_dir / name)
        files[name] = sha256_file(out_dir / name)
    template = cohort.get("template", SHIPPED_TEMPLATE)
    try:
        grid = load_template(name=template).grid
    except FileNotFoundError:
        grid = ModelGrid()
    modality = str(cohort.get("modality") or config.get("modality") or "T1")
    card = ModelCard(
        folder=out_dir, name=str(config.get("name") or out_dir.name), version=str(config.get("version", "0.1.0")),
        engine=engine.name, modality=modality, template=template, model_grid=grid,
        preprocessing={"intensity_percentiles": list(INTENSITY_PERCENTILES), "intensity_clip": list(INTENSITY_RANGE),
                       "outside_brain": 0.0, "slice_axis": 0, "slice_min_brain_fraction": config["min_slice_fraction"],
                       "training_brain_mask": "template brain mask through the detection path (slice cache)"},
        network=engine.network, inference=engine.inference,
        postprocess=PostprocessConfig(),
        training={"data": "healthy slices of the cohort (IXI T1 for the shipped recipes)",
                  "split_rule": datasets.SPLIT_RULE,
                  **{k: v for k, v in cohort.items() if k not in ("modality", "template")},
                  "hardware": hardware(next(engine.denoiser.parameters()).device), "torch": torch.__version__,
                  **training, "config": {k: config[k] for k in RECIPE_KEYS if k in config}},
        files=files,
        extra={"description": description, "validation": validation},
    )
    card.write()
    return out_dir
