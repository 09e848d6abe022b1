"""Intensity and appearance augmentation of single training slices, inside the brain; its random
state is saved with the checkpoints so a resumed run continues bit-exactly.

Input and target share the augmentation (the diffusion stage reconstructs the augmented slice),
so what it varies is what the reconstruction learns to follow from the scan instead of painting
IXI's appearance: global contrast (gamma), smooth bias fields, blur and noise (MONAI), and two
appearance changes IXI never shows but other scanners and the MNI152 average brain do
(docs/evaluation.md, the demo): deep grey matter, brainstem and cerebellum darker or brighter
relative to white matter (`regional_contrast`), and sharper edges (`sharpen`).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..preprocess.intensity import INTENSITY_RANGE

# Structures whose T1 contrast against white matter differs between sequences (DLMUSE names).
# The MNI152 average brain lies 0.10-0.24 (of the white-matter level) darker than any IXI head in
# these; the range reaches past that on both sides.
REGIONAL_GROUPS = {
    "deep grey matter": ("Putamen", "Caudate", "Pallidum", "Thalamus", "Accumbens", "VentralDC"),
    "brainstem": ("BrainStem",),
    "cerebellum": ("Cerebellum",),
}
REGIONAL_FACTORS = (0.72, 1.10)
REGIONAL_EDGE_SIGMA_VOXELS = 1.5  # the atlas is an average: soft edges, no lesion-like steps
SHARPEN_SIGMA_VOXELS = 1.0
SHARPEN_AMOUNT = (0.2, 1.0)


def regional_weights(atlas: np.ndarray, names) -> np.ndarray:
    """(groups, z, y, x) soft memberships in [0, 1] of REGIONAL_GROUPS on the atlas's grid."""
    weights = []
    for keys in REGIONAL_GROUPS.values():
        labels = [label for label, (name, _) in names.table.items() if name and any(k in name for k in keys)]
        member = np.isin(atlas, labels).astype(np.float32)
        weights.append(np.clip(ndimage.gaussian_filter(member, REGIONAL_EDGE_SIGMA_VOXELS), 0, 1))
    return np.stack(weights).astype(np.float32)


class RegionalContrast:
    """Scales each structure group of one axial slice by its own random factor (soft edges)."""

    def __init__(self, prob: float, weights: np.ndarray, seed: int):
        self.prob, self.weights = float(prob), weights
        self.R = np.random.RandomState(seed)

    def __call__(self, image: torch.Tensor, position: int) -> torch.Tensor:
        if self.R.rand() >= self.prob:
            return image
        if image.shape[-2:] != self.weights.shape[-2:] or not 0 <= position < self.weights.shape[1]:
            raise ValueError(f"regional_contrast: slice {position} of shape {tuple(image.shape[-2:])} is not on the "
                             f"atlas grid {self.weights.shape[1:]}; it needs slices of the T1 template's model grid")
        factors = self.R.uniform(*REGIONAL_FACTORS, size=len(self.weights)).astype(np.float32)
        field = 1.0 + np.tensordot(factors - 1.0, self.weights[:, position], axes=1)
        return image * torch.from_numpy(field.astype(np.float32))


class Sharpen:
    """Unsharp masking of one slice: x + a (x - blur(x))."""

    def __init__(self, prob: float, seed: int):
        self.prob = float(prob)
        self.R = np.random.RandomState(seed)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.R.rand() >= self.prob:
            return image
        amount = self.R.uniform(*SHARPEN_AMOUNT)
        array = image.numpy()
        blurred = ndimage.gaussian_filter(array, (0,) * (array.ndim - 2) + (SHARPEN_SIGMA_VOXELS,) * 2)
        return torch.from_numpy((array + amount * (array - blurred)).astype(np.float32))


class Augment:
    """Augmentation of single slices, inside the brain; state can be saved.

    config: probabilities per transform (gamma, bias_field, blur, noise, regional_contrast,
    sharpen). regional_contrast needs the slices' axial positions on the T1 template's model grid
    (SliceDataset.positions) and reads the shipped label atlas."""

    def __init__(self, config: dict, seed: int):
        from monai.transforms import (
            RandAdjustContrast,
            RandBiasField,
            RandGaussianNoise,
            RandGaussianSmooth,
        )
        self.transforms = [
            RandAdjustContrast(prob=config.get("gamma", 0.0), gamma=(0.7, 1.5)),
            RandBiasField(prob=config.get("bias_field", 0.0), coeff_range=(0.0, 0.3), degree=3),
            RandGaussianSmooth(prob=config.get("blur", 0.0), sigma_x=(0.25, 0.8), sigma_y=(0.25, 0.8)),
            RandGaussianNoise(prob=config.get("noise", 0.0), std=0.02),
        ]
        for k, transform in enumerate(self.transforms):
            transform.set_random_state(seed + k)
        self.regional = None
        if config.get("regional_contrast", 0.0) > 0:
            import SimpleITK as sitk

            from ..preprocess.templates import load_atlas

            atlas, names = load_atlas()
            self.regional = RegionalContrast(config["regional_contrast"],
                                             regional_weights(sitk.GetArrayFromImage(atlas), names), seed + 100)
        self.sharpen = Sharpen(config.get("sharpen", 0.0), seed + 101) if config.get("sharpen", 0.0) > 0 else None

    def __call__(self, images: torch.Tensor, brains: torch.Tensor, positions=None) -> torch.Tensor:
        if self.regional is not None and positions is None:
            raise ValueError("regional_contrast needs the slices' positions (random_batch gives them)")
        out = []
        for index, image in enumerate(images):
            x = image
            if self.regional is not None:
                x = self.regional(x, int(positions[index]))
            if self.sharpen is not None:
                x = self.sharpen(x)
            for transform in self.transforms:
                x = transform(x)
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32) if not torch.is_tensor(x) else x
            out.append(x.as_tensor() if hasattr(x, "as_tensor") else x)
        return (torch.stack(out).float().clamp(*INTENSITY_RANGE) * (brains > 0)).contiguous()

    def _own(self) -> list:
        return [t for t in (self.regional, self.sharpen) if t is not None]

    def state(self) -> list:
        return [t.R.get_state() for t in self.transforms + self._own()]

    def set_state(self, states: list) -> None:
        # a checkpoint of a recipe without the appearance transforms has fewer states: those keep their seed
        for transform, state in zip(self.transforms + self._own(), states):
            transform.R.set_state(state)
