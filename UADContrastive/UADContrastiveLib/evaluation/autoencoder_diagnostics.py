"""How good the latent engines' shared autoencoder is, on the tuning harness's own cases: the
figures that bound what MAD-AD and the latent DDPM can do, before either denoiser trains.

    python -m UADContrastiveLib.evaluation.autoencoder_diagnostics \
        --autoencoder training-state/latent-autoencoder-t1/autoencoder_final.pt [--out FILE.json]

  healthy_mae     mean |x - decode(encode(x))| in the brain of the unseen healthy tuning heads:
                  the latent DDPM's healthy background inside every healed cell
  lesion_kept     per lesioned tuning case, (decode(encode(x)) - healthy head) / (x - healthy head)
                  averaged in the lesion: 1 = the autoencoder reproduces the lesion's contrast, so a
                  denoiser that heals the lesion's cells shows it in decode(z) - decode(healed);
                  0 = the autoencoder already erases it and no denoiser can find it
  lesion_kept_by_kind  the same per lesion kind (glioma, WML, stroke shapes)
Deterministic (posterior means, no sampling). Only the tuning part is read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .diffusion_diagnostics import print_and_save
from .tuning import GridCase, tuning_cases

BATCH = 32


@torch.inference_mode()
def autoencode(codec, volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """decode(encode(x)) of every brain slice (axis 0); voxels outside the brain keep the input."""
    device = next(codec.parameters()).device
    out = volume.astype(np.float32, copy=True)
    indices = np.flatnonzero(brain.reshape(len(brain), -1).any(1))
    for start in range(0, len(indices), BATCH):
        pick = indices[start:start + BATCH]
        slices = torch.from_numpy(volume[pick][:, None].astype(np.float32)).to(device)
        mean, _ = codec.encode(slices)
        out[pick] = codec.decode(mean)[:, 0].float().cpu().numpy()
    return np.where(brain, out, volume).astype(np.float32)


def lesion_kept(case: GridCase, reconstruction: np.ndarray) -> float | None:
    """The share of the inserted contrast the reconstruction keeps in the lesion; None when the
    insertion changed the image by less than 1e-3 there (nothing to keep)."""
    inserted = float((case.volume - case.healthy_head)[case.lesion].mean())
    if abs(inserted) <= 1e-3:
        return None
    return float((reconstruction - case.healthy_head)[case.lesion].mean()) / inserted


def lesion_kind(case_id: str) -> str:
    """'glioma', 'wml' or 'stroke' from a tuning case id (HEAD+KIND-DONOR)."""
    kind = case_id.split("+", 1)[-1].split("-", 1)[0]
    return {"brats": "glioma"}.get(kind, kind)


def diagnose(autoencoder_file: Path, data: Path, device: str = "cpu", log=print) -> dict:
    from ..engines.latent_autoencoder.training import load_autoencoder
    from ..preprocess.templates import load_template

    finished = load_autoencoder(Path(autoencoder_file), torch.device(device))
    heads, lesioned = tuning_cases(Path(data), load_template())
    mae = [float(np.abs(h.volume - autoencode(finished.codec, h.volume, h.brain))[h.brain].mean()) for h in heads]
    log(f"healthy MAE {np.mean(mae):.4f} over {len(heads)} tuning heads")
    kept: dict[str, list[float]] = {}
    for case in lesioned:
        value = lesion_kept(case, autoencode(finished.codec, case.volume, case.brain))
        if value is not None:
            kept.setdefault(lesion_kind(case.id), []).append(value)
    every = [v for values in kept.values() for v in values]
    log(f"lesion contrast kept {np.mean(every):.3f} over {len(every)} lesioned cases")
    return {"autoencoder": str(autoencoder_file), "sha256": finished.sha256, "training": finished.summary,
            "healthy_heads": len(heads), "healthy_mae": round(float(np.mean(mae)), 4),
            "healthy_mae_per_head": {h.id: round(v, 4) for h, v in zip(heads, mae)},
            "lesioned_cases": len(every), "lesion_kept": round(float(np.mean(every)), 3),
            "lesion_kept_by_kind": {k: {"cases": len(v), "mean": round(float(np.mean(v)), 3)}
                                    for k, v in sorted(kept.items())}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--autoencoder", required=True, type=Path, help="an autoencoder_final.pt")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    print_and_save(diagnose(args.autoencoder, args.data, log=lambda m: print(m, flush=True)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
