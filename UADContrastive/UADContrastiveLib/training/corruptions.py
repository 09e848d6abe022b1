"""Anomaly-imitating views (contrastive positives) and a 3D synthetic-lesion generator.

2D views, on torch tensors (B, 1, H, W) with brain masks (B, 1, H, W), used to build
positive pairs for the contrastive encoder (the paper's "anomaly-imitating" views):
  - `patch_mask`: the paper's code masks 65 % of 32-px cells of 128-px images (a 4 x 4
    grid); at 96 px we mask 65 % of the cells of a 4 x 4 grid of 24-px cells.
  - `random_erase`: a random rectangle inside the brain set to a random constant.
  - `lesion_blobs`: smooth random blobs inside the brain, hypo- or hyperintense.

`insert_synthetic_lesions` is the 3D counterpart on model-grid numpy arrays, used for
evaluation and the demo.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

# ---------------------------------------------------------------- 3D (numpy) generator


def insert_synthetic_lesions(volume: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator,
                             count: int = 1, radius_mm: tuple[float, float] = (6.0, 16.0),
                             spacing_mm: float = 2.0, intensity: str = "random",
                             contrast: tuple[float, float] = (0.35, 0.7),
                             min_changed: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Insert `count` smooth random-shaped lesions inside the brain.

    volume: (Z, Y, X) float normalised model-grid volume (brain p1 -> 0, p99 -> 1).
    brain_mask: (Z, Y, X) bool. rng: numpy Generator (same seed -> same lesions).
    radius_mm: range of the lesion's mean radius; the shape is a sphere deformed by smooth noise.
    intensity: "hyper", "hypo" or "random" (per lesion).
    contrast: range of c; a hyperintense lesion blends towards 1 + c, a hypointense one
        towards 0.3 - 0.3 c (CSF-like): lesion voxels become (1 - w) x + w target with a
        soft weight w in [0, 1] (1 in the core, fading over ~1 radius/2 at the edge).
    Returns (volume_with_lesions float32, lesion_mask bool): the mask holds exactly the
    brain voxels whose value changed by more than `min_changed`; every lesion voxel lies
    inside the brain, and voxels outside the mask are unchanged.
    """
    volume = np.asarray(volume, dtype=np.float32)
    brain = np.asarray(brain_mask, dtype=bool)
    out = volume.copy()
    if not brain.any() or count <= 0:
        return out, np.zeros_like(brain)
    # centres at least ~half a radius inside the brain
    inner = ndimage.binary_erosion(brain, iterations=3)
    candidates = np.argwhere(inner if inner.any() else brain)
    zz, yy, xx = np.indices(volume.shape, dtype=np.float32)
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        radius = rng.uniform(*radius_mm) / spacing_mm
        # smooth random deformation of a sphere
        noise = ndimage.gaussian_filter(rng.standard_normal(volume.shape).astype(np.float32), 3.0)
        noise /= max(float(np.abs(noise).max()), 1e-6)
        distance = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        field = distance / radius - 0.5 * noise          # < 1 inside the lesion
        weight = np.clip(1.5 - field, 0.0, 1.0) * brain   # soft edge, 0 outside the brain
        kind = intensity if intensity != "random" else ("hyper" if rng.random() < 0.5 else "hypo")
        change = rng.uniform(*contrast)
        target = 1.0 + change if kind == "hyper" else 0.3 - change * 0.3
        out = ((1.0 - weight) * out + weight * target).astype(np.float32)
    out[~brain] = volume[~brain]
    lesion = (np.abs(out - volume) > min_changed) & brain
    # voxels that changed less than min_changed are put back, so mask == changed voxels
    out[~lesion] = volume[~lesion]
    return out, lesion


# ---------------------------------------------------------------- 2D views (torch)


def patch_mask(images: torch.Tensor, brains: torch.Tensor, generator: torch.Generator | None = None,
               cells: int = 4, ratio: float = 0.65) -> torch.Tensor:
    """Zero a random `ratio` of the cells of a `cells` x `cells` grid (per image)."""
    b, _, h, w = images.shape
    scores = torch.rand(b, cells * cells, generator=generator, device=images.device)
    masked = int(round(ratio * cells * cells))
    ranks = scores.argsort(dim=1).argsort(dim=1)
    mask = (ranks >= masked).float()  # exactly `masked` cells per image are zeroed
    mask = mask.view(b, 1, cells, cells)
    mask = F.interpolate(mask, size=(h, w), mode="nearest")
    return images * mask


def random_erase(images: torch.Tensor, brains: torch.Tensor, generator: torch.Generator | None = None,
                 area: tuple[float, float] = (0.05, 0.25)) -> torch.Tensor:
    """Set a random rectangle (area share of the image) to a random constant, inside the brain."""
    b, _, h, w = images.shape
    out = images.clone()
    for i in range(b):
        share = float(torch.empty(1).uniform_(*area, generator=generator))
        aspect = float(torch.empty(1).uniform_(0.5, 2.0, generator=generator))
        eh = max(2, min(h - 1, int(round((share * h * w * aspect) ** 0.5))))
        ew = max(2, min(w - 1, int(round((share * h * w / aspect) ** 0.5))))
        y0 = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
        value = float(torch.empty(1).uniform_(0.0, 1.3, generator=generator))
        region = torch.zeros(h, w, dtype=torch.bool, device=images.device)
        region[y0:y0 + eh, x0:x0 + ew] = True
        region &= brains[i, 0] > 0
        out[i, 0][region] = value
    return out


def blob_weights(brains: torch.Tensor, generator: torch.Generator | None = None,
                 count: tuple[int, int] = (1, 3), radius: tuple[float, float] = (3.0, 12.0)) -> torch.Tensor:
    """Soft blob weights (B,1,H,W) in [0,1], random smooth shapes centred inside the brain."""
    b, _, h, w = brains.shape
    device = brains.device
    yy, xx = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    weights = torch.zeros(b, 1, h, w, device=device)
    # low-frequency noise field for shape irregularity
    coarse = torch.randn(b, 1, 6, 6, generator=generator).to(device)
    noise = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    noise = noise / noise.flatten(1).abs().amax(1).clamp_min(1e-6).view(b, 1, 1, 1)
    for i in range(b):
        inside = torch.nonzero(brains[i, 0] > 0)
        if len(inside) == 0:
            continue
        n = int(torch.randint(count[0], count[1] + 1, (1,), generator=generator))
        for _ in range(n):
            cy, cx = inside[int(torch.randint(len(inside), (1,), generator=generator))].float()
            r = float(torch.empty(1).uniform_(*radius, generator=generator))
            field = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r - 0.5 * noise[i, 0]
            weights[i, 0] = torch.maximum(weights[i, 0], (1.5 - field).clamp(0, 1))
    return weights * (brains > 0).float()


def lesion_blobs(images: torch.Tensor, brains: torch.Tensor, generator: torch.Generator | None = None,
                 contrast: tuple[float, float] = (0.3, 0.8)) -> torch.Tensor:
    """Blend smooth blobs inside the brain towards a bright (1 + c) or dark (0.05) target."""
    b = images.shape[0]
    weights = blob_weights(brains, generator)
    bright = torch.rand(b, generator=generator).to(images.device) < 0.5
    change = torch.empty(b).uniform_(*contrast, generator=generator).to(images.device)
    target = torch.where(bright, 1.0 + change, torch.full_like(change, 0.05)).view(b, 1, 1, 1)
    return (1 - weights) * images + weights * target


VIEWS = {"patch_mask": patch_mask, "random_erase": random_erase, "lesion_blobs": lesion_blobs}


def anomaly_view(images: torch.Tensor, brains: torch.Tensor,
                 generator: torch.Generator | None = None,
                 views: tuple[str, ...] = ("patch_mask", "random_erase", "lesion_blobs")) -> torch.Tensor:
    """One randomly chosen anomaly-imitating view per image."""
    choice = torch.randint(len(views), (images.shape[0],), generator=generator)
    out = images.clone()
    for k, name in enumerate(views):
        selected = choice == k
        if selected.any():
            idx = torch.nonzero(selected).flatten()
            out[idx] = VIEWS[name](images[idx], brains[idx], generator)
    return out
