"""Training configuration: the shipped defaults (`Resources/Models/train_config.yaml`)
deeply updated by a recipe file (`uadc train --config FILE`) and by overrides."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..resources import SHIPPED_MODELS

DEFAULT_CONFIG = SHIPPED_MODELS / "train_config.yaml"


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The default config, updated (deeply) by the YAML file `path` and `overrides`."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if path:
        config = deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
    return deep_update(config, overrides or {})


def deep_update(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
