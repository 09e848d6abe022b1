"""Where models are found (shipped, then the user's cache) and how a folder is trusted.

A model folder holds `model.json` (the card, see `card`) and the weight files it lists in
`files: {filename: sha256}`. Every listed file must exist and match its checksum
before any weight is loaded (`verify_model`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .. import resources
from ..errors import ModelError
from .card import CARD, ModelCard

DEFAULT_MODEL = "contrastive-diffusion-t1"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_card(model_dir: str | Path) -> dict:
    """The model card of a folder as a plain dict (validated through ModelCard)."""
    return ModelCard.read(model_dir).to_dict()


def verify_model(model_dir: str | Path, card: ModelCard | None = None) -> ModelCard:
    """Check every file listed in the card exists and matches its sha256; return the card.
    `card`: the folder's card when the caller has already read it (it is not read again)."""
    model_dir = Path(model_dir)
    card = card or ModelCard.read(model_dir)
    for name, expected in card.files.items():
        path = model_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelError(path, "is listed in the model card with a path outside the model folder.")
        if not path.is_file():
            raise ModelError(path, "is missing from the model folder.", "Reinstall or re-download the model.")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(path, f"does not match its checksum in {CARD} (sha256 {actual[:12]}... "
                             f"instead of {str(expected)[:12]}...): the file is corrupt or was modified.",
                             "Reinstall or re-download the model.")
    return card


def model_dirs() -> list[Path]:
    """Folders searched for models: the shipped ones, then the user cache."""
    return [resources.SHIPPED_MODELS, resources.user_cache_dir() / "models"]


def list_models() -> list[dict]:
    """[{name, path, source, version, engine, modality}] for every readable model card found."""
    found = []
    for source, base in zip(("shipped", "user"), model_dirs()):
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if (p / CARD).is_file()):
            try:
                card = ModelCard.read(folder)
            except ModelError:
                continue
            found.append({"name": card.name, "path": folder, "source": source,
                          "version": card.version, "engine": card.engine, "modality": card.modality})
    return found


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """A model folder from a path, or a model name (shipped first, then the user cache)."""
    name_or_path = name_or_path or DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if (path / CARD).is_file():
        return path
    for base in model_dirs():
        if (base / str(name_or_path) / CARD).is_file():
            return base / str(name_or_path)
    for model in list_models():
        if model["name"] == str(name_or_path):
            return model["path"]
    names = ", ".join(m["name"] for m in list_models()) or "none installed"
    raise ModelError(str(name_or_path), f"is neither a model folder nor a known model name (known: {names}).",
                     "Give a folder holding model.json, or one of the known names.")
