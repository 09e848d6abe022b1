"""Random latent patch masks for MAD-AD training, and its short noise schedule.

Facts taken from the paper and the authors' released training code (farzad-bz/MAD-AD):
  - per batch, a patch height and a patch width are drawn independently from 1, 2, 4, 8 latent
    cells with probabilities 0.2, 0.3, 0.3, 0.2 (patches are rectangles, not only squares);
  - per slice, a mask ratio is drawn uniformly in [0, 0.4] and that share of the patch grid is
    noised; the rest of the latent stays clean and is context;
  - cells outside the brain are never noised;
  - 10 diffusion steps, betas linear from 0.01 to 0.2 (Ho et al.'s 1e-4..0.02 rescaled by
    1000 / 10), x0 prediction.
This file only states these facts in code of its own.
"""
from __future__ import annotations

import torch

PATCH_SIZES = (1, 2, 4, 8)
PATCH_PROBABILITIES = (0.2, 0.3, 0.3, 0.2)
DEFAULT_SCHEDULE = {"num_train_timesteps": 10, "schedule": "linear_beta", "beta_start": 0.01, "beta_end": 0.2}


def draw_patch_size(generator: torch.Generator, sizes=PATCH_SIZES, probabilities=PATCH_PROBABILITIES) -> int:
    index = torch.multinomial(torch.tensor(probabilities, dtype=torch.float64), 1, generator=generator)
    return int(sizes[int(index)])


def random_patch_mask(batch: int, height: int, width: int, generator: torch.Generator, max_ratio: float = 0.4,
                      patch: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks (B,1,H,W) bool, True = noised cell; ratios (B,) drawn in [0, max_ratio]).

    The H x W latent is tiled by patches of patch[0] x patch[1] cells (drawn with
    draw_patch_size when not given; each must divide the latent size); round(ratio x number of
    patches) of them, chosen at random, are noised."""
    if patch is None:
        patch = (draw_patch_size(generator), draw_patch_size(generator))
    py, px = (int(p) for p in patch)
    if height % py or width % px:
        raise ValueError(f"patches of {py} x {px} cells do not tile a {height} x {width} latent")
    rows, cols = height // py, width // px
    ratios = torch.rand(batch, generator=generator) * float(max_ratio)
    counts = (ratios * rows * cols).round().long()
    # a random permutation per slice: the first `count` patches of it are noised
    order = torch.rand((batch, rows * cols), generator=generator).argsort(dim=1)
    chosen = torch.zeros((batch, rows * cols), dtype=torch.bool)
    chosen.scatter_(1, order, torch.arange(rows * cols).expand(batch, -1) < counts[:, None])
    grid = chosen.view(batch, 1, rows, cols)
    return grid.repeat_interleave(py, dim=2).repeat_interleave(px, dim=3), ratios
