"""Why the contrastive diffusion model does or does not reconstruct *this* brain: the figures
the tuning harness (evaluation.tuning) does not give, on the tuning harness's own cases.

    python -m UADContrastiveLib.evaluation.diffusion_diagnostics --model DIR [--timesteps 250 400 ...] [--out FILE.json]

evaluation.tuning gives, on the tuning part's healthy heads and its heads carrying real lesion
shapes, the healthy MAE and the lesion contrast removed at the model's own inference settings,
and the AUPRC through the one map chain (detection.anomaly_map). Here, on the same cases:
  population_mean_mae  the healthy MAE of the population-mean image (the training subjects'
                       mean on the model grid): the bar any reconstruction must beat
  swap                 mean |recon(x | own latent) - recon(x | latent of another head's slice at
                       the same level)| in the brain: how much the latent is about *this*
                       subject (0 = the condition carries nothing subject-specific)
  per_timestep         healthy MAE and lesion contrast removed with one pass at each t
                       (tuning.reconstruction_figures), to choose the inference range
Everything is seeded; the same model gives the same figures. Only the tuning part is read.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

from ..datasets import is_validation
from ..training import slice_cache
from .tuning import GridCase, reconstruction_figures, tuning_cases

TIMESTEPS = (250, 400, 500, 750)
SWAP_SLICES = 12  # evenly spread brain slices per head


def population_mean(subject_ids: list[str], cache_dir: Path | None = None) -> np.ndarray:
    """The voxel-wise mean of the subjects' model-grid volumes (the slice cache)."""
    total = None
    for subject_id in subject_ids:
        volume, _ = slice_cache.load_subject(subject_id, cache_dir)
        total = volume.astype(np.float64) if total is None else total + volume
    return (total / len(subject_ids)).astype(np.float32)


def population_mean_mae(mean_image: np.ndarray, heads: list[GridCase]) -> float:
    return float(np.mean([np.abs(h.volume - mean_image)[h.brain].mean() for h in heads]))


def _reconstruct_slices(engine, images: np.ndarray, condition: np.ndarray | None = None) -> np.ndarray:
    import torch

    slices = torch.from_numpy(images[:, None].copy())
    cond = None if condition is None else torch.from_numpy(condition[:, None].copy())
    generator = torch.Generator().manual_seed(int(engine.inference["seed"]))
    return engine.reconstruct_slices(slices, generator, condition=cond)[:, 0].cpu().numpy()


def swap_change(engine, heads: list[GridCase], slices: int = SWAP_SLICES,
                min_fraction: float = slice_cache.MIN_SLICE_FRACTION) -> list[float]:
    """Per head: the mean change in the brain when the next head's slices at the same levels
    condition the reconstruction instead of the head's own (the same noise both times)."""
    changes = []
    for index, head in enumerate(heads):
        other = heads[(index + 1) % len(heads)]
        levels = slice_cache.brain_slices(head.brain, min_fraction)
        levels = levels[np.linspace(0, len(levels) - 1, min(slices, len(levels))).round().astype(int)]
        own = _reconstruct_slices(engine, head.volume[levels])
        swapped = _reconstruct_slices(engine, head.volume[levels], other.volume[levels])
        changes.append(float(np.abs(own - swapped)[head.brain[levels]].mean()))
    return changes


def at_timestep(engine, t: int):
    """The engine reconstructing with one pass at step t (the model itself is shared)."""
    single = copy.copy(engine)
    single.inference = {**engine.inference, "timesteps": [int(t)]}
    return single


def per_timestep(engine, heads: list[GridCase], lesioned: list[GridCase], timesteps=TIMESTEPS, log=print) -> dict:
    """{t: {healthy_mae, contrast_removed}} with one pass at each t, on the tuning cases."""
    figures = {}
    for t in timesteps:
        single = at_timestep(engine, t)
        recon = {case.id: single.reconstruct(case.volume, case.brain) for case in heads + lesioned}
        figures[str(t)] = {k: round(v, 4) for k, v in reconstruction_figures(recon, heads, lesioned).items()}
        log(f"t = {t}: {figures[str(t)]}")
    return figures


def diagnose(model_dir: Path, data: Path, timesteps=TIMESTEPS, device: str = "cpu", log=print) -> dict:
    from ..engines.registry import load_engine
    from ..preprocess.templates import load_template

    engine = load_engine(Path(model_dir), device)
    if not hasattr(engine, "reconstruct_slices") or "timesteps" not in engine.inference:
        raise ValueError(f"{model_dir}: not a contrastive diffusion model (these diagnostics are of its "
                         "conditioning and its noise level).")
    heads, lesioned = tuning_cases(Path(data), load_template())
    training = [p.stem for p in slice_cache.default_cache_dir().glob("IXI*.npz") if not is_validation(p.stem)]
    swaps = swap_change(engine, heads)
    return {"model": str(model_dir), "inference": engine.inference, "healthy_heads": [h.id for h in heads],
            "lesioned_cases": len(lesioned),
            "population_mean_mae": round(population_mean_mae(population_mean(sorted(training)), heads), 4),
            "swap": {"mean": round(float(np.mean(swaps)), 4), "per_head": [round(v, 4) for v in swaps]},
            "per_timestep": per_timestep(engine, heads, lesioned, timesteps, log)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--timesteps", type=int, nargs="*", default=list(TIMESTEPS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    print_and_save(diagnose(args.model, args.data, args.timesteps, log=lambda m: print(m, flush=True)), args.out)
    return 0


def print_and_save(result: dict, out: Path | None) -> None:
    """The diagnostics' JSON on stdout and, with --out, in that file."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
