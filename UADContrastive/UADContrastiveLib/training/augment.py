"""Intensity augmentation of single training slices (MONAI), inside the brain; its random
state is saved with the checkpoints so a resumed run continues bit-exactly."""
from __future__ import annotations

import numpy as np
import torch

from ..preprocess.intensity import INTENSITY_RANGE


class Augment:
    """MONAI intensity augmentation of single slices, inside the brain; state can be saved."""

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

    def __call__(self, images: torch.Tensor, brains: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            x = image
            for transform in self.transforms:
                x = transform(x)
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32) if not torch.is_tensor(x) else x
            out.append(x.as_tensor() if hasattr(x, "as_tensor") else x)
        return (torch.stack(out).float().clamp(*INTENSITY_RANGE) * (brains > 0)).contiguous()

    def state(self) -> list:
        return [t.R.get_state() for t in self.transforms]

    def set_state(self, states: list) -> None:
        for transform, state in zip(self.transforms, states):
            transform.R.set_state(state)
