"""The model zoo: model cards (`card`), finding and verifying model folders (`registry`),
installing models into the user's cache (`install`)."""
from .card import CARD, ModelCard
from .registry import (
    DEFAULT_MODEL,
    list_models,
    model_dirs,
    read_card,
    resolve_model,
    sha256_file,
    verify_model,
)

__all__ = ["CARD", "DEFAULT_MODEL", "ModelCard", "list_models", "model_dirs", "read_card", "resolve_model",
           "sha256_file", "verify_model"]
