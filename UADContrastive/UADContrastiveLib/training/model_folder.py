"""The model folder a training writes, for every engine: its weight files, then the model card
listing their sha256, written last and atomically (a folder with a card is complete).

What every trained card states the same way lives here: the template and model grid the
volumes were put on, the intensity normalisation, the modality, the split rule and the cohort,
the machine and the torch version. Each engine adds its own network, inference settings,
training figures and description.
"""
from __future__ import annotations

from pathlib import Path

from .. import datasets
from ..zoo.card import ModelCard, cumulative_training
from ..zoo.registry import sha256_file

TRAINING_BRAIN_MASK = "template brain mask through the detection path (slice cache)"


def save_weights(module, path: Path) -> None:
    """A module's state dict only (loadable with weights_only=True), as contiguous CPU tensors:
    the file is the same whatever device or memory format trained it."""
    from .loop import save_atomic

    save_atomic({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, Path(path))


def write_card(out_dir: Path, *, engine: str, config: dict, files: list[str], cohort: dict | None = None,
               training: dict | None = None, network: dict | None = None, inference: dict | None = None,
               extra: dict | None = None, slice_min_brain_fraction: float | None = None,
               hardware: str | None = None, data: str | None = None, run_seconds: float | None = None) -> ModelCard:
    """The card of the weight `files` already written in `out_dir` (hashed here), written last.

    cohort: training.cohort's record (modality, template, split, subjects...); training: the engine's
    own training figures, which take precedence over the cohort's fields of the same name;
    data: what the training data were when the cohort record does not say (a run on an already
    built slice cache); slice_min_brain_fraction: for engines trained on slices, the slice
    selection they used; run_seconds: this invocation's wall time. The card records the training
    time and steps of the whole training state (`training_minutes`, `training_steps`, summed over
    its stages and every run that resumed them) and this run's own (`this_run_minutes`)."""
    import torch

    from ..preprocess.intensity import INTENSITY_PERCENTILES, INTENSITY_RANGE
    from ..preprocess.templates import SHIPPED_TEMPLATE, ModelGrid, load_template

    out_dir = Path(out_dir)
    cohort = cohort or {}
    template = cohort.get("template", SHIPPED_TEMPLATE)  # the template the cohort was registered to
    try:
        grid = load_template(name=template).grid
    except FileNotFoundError:
        grid = ModelGrid()
    preprocessing = {"intensity_percentiles": list(INTENSITY_PERCENTILES), "intensity_clip": list(INTENSITY_RANGE),
                     "outside_brain": 0.0, "training_brain_mask": TRAINING_BRAIN_MASK}
    if slice_min_brain_fraction is not None:
        preprocessing.update(slice_axis=0, slice_min_brain_fraction=slice_min_brain_fraction)
    training = {**(training or {}), **({"this_run_minutes": round(run_seconds / 60, 1)} if run_seconds is not None else {})}
    total = cumulative_training(training)
    training.update(training_minutes=total["minutes"], training_steps=total["steps"])
    card = ModelCard(
        folder=out_dir, name=str(config.get("name") or out_dir.name), version=str(config.get("version", "0.1.0")),
        engine=engine, modality=str(cohort.get("modality") or config.get("modality") or "T1"),
        template=template, model_grid=grid, preprocessing=preprocessing,
        network=network or {}, inference=inference or {},
        training={**({"data": data} if data else {}), "split_rule": datasets.SPLIT_RULE, **{k: v for k, v in cohort.items() if k not in ("modality", "template")},
                  **({"hardware": hardware} if hardware else {}), "torch": torch.__version__, **training},
        files={name: sha256_file(out_dir / name) for name in files},
        extra=extra or {},
    )
    card.write()
    return card
