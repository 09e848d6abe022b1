"""The model folder of a latent engine: `autoencoder.pt` and `denoiser.pt` and the card
(training.model_folder)."""
from __future__ import annotations

from pathlib import Path

from ...training.loop import hardware
from ...training.model_folder import save_weights, write_card
from .engine import AUTOENCODER_FILE, DENOISER_FILE, LatentEngine

# recipe keys a latent engine's training reads; the card records these, not the other engines' defaults
RECIPE_KEYS = ("name", "version", "seed", "threads", "min_slice_fraction", "augmentation", "autoencoder",
               "autoencoder_path", "autoencoder_state", "denoiser", "inference", "checkpoint_minutes")


def write_latent_model_folder(out_dir: Path, engine: LatentEngine, config: dict, cohort: dict, training: dict,
                              validation: dict, description: str, run_seconds: float) -> Path:
    """Weights + card of `engine` (engine.name, engine.network, engine.inference) in `out_dir`;
    run_seconds: this run's wall time."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, module in ((AUTOENCODER_FILE, engine.codec), (DENOISER_FILE, engine.denoiser)):
        save_weights(module, out_dir / name)
    write_card(out_dir, engine=engine.name, config=config, files=[AUTOENCODER_FILE, DENOISER_FILE], cohort=cohort,
               training={**training, "config": {k: config[k] for k in RECIPE_KEYS if k in config}},
               network=engine.network, inference=engine.inference,
               extra={"description": description, "validation": validation},
               slice_min_brain_fraction=config["min_slice_fraction"],
               hardware=hardware(next(engine.denoiser.parameters()).device),
               data="healthy slices of the cohort (IXI T1 for the shipped recipes)", run_seconds=run_seconds)
    return out_dir
