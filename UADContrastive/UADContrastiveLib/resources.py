"""Where the shipped resources (models, templates, icons) live.

The core sits beside the Slicer module's Resources folder (UADContrastive/Resources),
both in a source checkout (editable install) and inside an installed Slicer extension.
"""
from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "Resources"
SHIPPED_MODELS = RESOURCES / "Models"
TEMPLATES = RESOURCES / "Templates"
SOURCE_CHECKOUT = RESOURCES.parent.parent  # the repository root in a source checkout (holds training-state/)


def user_cache_dir() -> Path:
    """Per-user cache for downloaded/imported models (UADC_CACHE overrides)."""
    if os.environ.get("UADC_CACHE"):
        return Path(os.environ["UADC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.environ.get("LOCALAPPDATA") if os.name == "nt" else None) or Path.home() / ".cache"
    return Path(base) / "uadcontrastive"
