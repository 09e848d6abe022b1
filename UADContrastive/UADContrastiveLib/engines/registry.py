"""Engine name (the card's `engine` field, `uadc train --engine`) -> engine class and trainer.

Entries are "module:attribute" strings imported on first use, so listing or loading one
engine never imports another engine's dependencies. A new engine adds its folder under
`engines/` and one line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .base import Engine, resolve_device


@dataclass(frozen=True)
class EngineEntry:
    engine: str   # "module:Class" of the Engine subclass
    trainer: str  # "module:function": train(config, data_root, out_dir, stage, resume, device) -> summary
    summary: str
    stages: tuple[str, ...] = ("all",)  # `uadc train --stage` values; the last one writes the model folder


ENGINES: dict[str, EngineEntry] = {
    "contrastive_diffusion": EngineEntry(
        f"{__package__}.contrastive_diffusion.engine:ContrastiveDiffusionEngine",
        f"{__package__}.contrastive_diffusion.training:train",
        "latent-conditioned diffusion reconstruction (Patricio et al. 2025)",
        ("encoder", "diffusion", "all")),
    "zscore_atlas": EngineEntry(
        f"{__package__}.zscore_atlas.engine:ZScoreAtlasEngine",
        f"{__package__}.zscore_atlas.training:train",
        "voxel-wise z-score against a healthy atlas (baseline)"),
    "mad_ad": EngineEntry(
        f"{__package__}.mad_ad.engine:MadAdEngine",
        f"{__package__}.mad_ad.training:train",
        "masked diffusion in an autoencoder latent, restores the cells it finds noisy (Beizaee et al. 2025)",
        ("autoencoder", "denoiser", "all")),
    "latent_ddpm": EngineEntry(
        f"{__package__}.latent_ddpm.engine:LatentDdpmEngine",
        f"{__package__}.latent_ddpm.training:train",
        "DDPM in an autoencoder latent, heals the cells that change most (Pinaya et al. 2022)",
        ("autoencoder", "denoiser", "all")),
}
DEFAULT_TRAINING_ENGINE = "contrastive_diffusion"


def _resolve(reference: str):
    module, attribute = reference.split(":")
    return getattr(importlib.import_module(module), attribute)


def _entry(name: str, card_path=None) -> EngineEntry:
    if name not in ENGINES:
        raise ModelError(card_path, f"names an unknown engine {name!r} (known: {', '.join(sorted(ENGINES))}).",
                         "Update UADContrastive, or use a model made for this version.")
    return ENGINES[name]


def engine_class(name: str, card_path=None) -> type[Engine]:
    return _resolve(_entry(name, card_path).engine)


def trainer(name: str):
    return _resolve(_entry(name).trainer)


def entry(name: str) -> EngineEntry:
    return _entry(name)


def load_engine(model_dir: Path, device: str = "auto", card=None) -> Engine:
    """Verify the model folder's checksums, then build its engine on `device`; `card`: the
    folder's card when the caller has already read it (it is not read again)."""
    from ..zoo.registry import verify_model

    card = verify_model(Path(model_dir), card)
    cls = engine_class(card.engine, card.path)
    return cls.from_folder(Path(model_dir), card, resolve_device(device))
