"""Preprocessing with an exact inverse: input grid <-> model grid.

`preprocess()` composes the steps, each a function of its own module:
  canonical orientation (`registration`) -> brain mask and the registration it implies
  (`brain_mask.find_brain`) -> resampling onto the model grid (`registration.resample`)
  -> intensity normalisation (`intensity`).
It returns a `Preprocessed` object that remembers the transform, so `to_input_grid()` puts any
model-grid map back on the input's exact grid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .brain_mask import brain_volume_ml, find_brain
from .intensity import denormalise_intensity, normalise_intensity
from .registration import canonical_orientation, resample
from .templates import ModelGrid, Template


@dataclass
class Preprocessed:
    """One subject on the model grid, plus everything needed to go back to its input grid."""

    input_reference: sitk.Image          # the input's grid (a 1-voxel-deep copy is not enough: we keep the image)
    transform: sitk.Transform            # model-grid point -> input point
    model_input: sitk.Image              # float32, model grid, normalised, 0 outside the brain
    brain_mask_model: sitk.Image         # uint8, model grid
    brain_mask_input: sitk.Image         # uint8, input grid
    intensity_range: tuple[float, float]  # input intensities mapped to 0 and 1
    brain_source: str                    # how the brain mask was obtained (brain_mask.find_brain)
    timings: dict = field(default_factory=dict)
    _inverse: sitk.Transform | None = field(default=None, init=False, repr=False, compare=False)

    def to_input_grid(self, model_image: sitk.Image | np.ndarray, interpolator=sitk.sitkLinear,
                      default: float = 0.0) -> sitk.Image:
        """Carry a model-grid map back onto the input's exact grid (size, spacing, origin, direction)."""
        if isinstance(model_image, np.ndarray):
            array = model_image
            model_image = sitk.GetImageFromArray(array.astype(np.float32))
            model_image.CopyInformation(self.model_input)
        return sitk.Resample(model_image, self.input_reference, self.input_to_model,
                             interpolator, default, model_image.GetPixelID())

    @property
    def input_to_model(self) -> sitk.Transform:
        """The inverse of `transform`: input point -> model-grid point (computed once)."""
        if self._inverse is None:
            self._inverse = self.transform.GetInverse()
        return self._inverse

    def intensity_to_input(self, normalised: np.ndarray) -> np.ndarray:
        return denormalise_intensity(normalised, self.intensity_range)

    def summary(self) -> dict:
        transform = self.transform
        return {
            "transform": {
                "type": "affine (model grid point -> input point, LPS mm)",
                "matrix": list(transform.GetMatrix()),
                "translation": list(transform.GetTranslation()),
                "center": list(transform.GetCenter()),
            },
            "brain_source": self.brain_source,
            "brain_volume_ml": brain_volume_ml(self.brain_mask_input),
            "intensity_range": list(self.intensity_range),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def preprocess(image: sitk.Image, template: Template, grid: ModelGrid | None = None,
               brain_mask: sitk.Image | None = None, skull_stripped: str = "auto",
               source: str | None = None) -> Preprocessed:
    """Bring one input volume onto the model grid; see the module docstring.

    brain_mask: a known brain mask on the input grid (user's, or a training parcellation).
    skull_stripped: "auto" (decide from the foreground volume), "yes" or "no".
    source: the input's name, for error messages.
    """
    grid = grid or template.grid
    start = time.perf_counter()
    canonical = canonical_orientation(image)
    timings = {"orientation": time.perf_counter() - start}

    brain = find_brain(image, canonical, template, brain_mask, skull_stripped, source)
    timings.update(brain.timings)

    start = time.perf_counter()
    reference = grid.reference()
    mask_model = resample(sitk.Cast(brain.mask, sitk.sitkFloat32), reference, brain.transform) > 0.5
    mask_model = sitk.Cast(mask_model, sitk.sitkUInt8)
    on_grid = resample(image, reference, brain.transform, sitk.sitkLinear,
                       float(np.min(sitk.GetArrayViewFromImage(image))))
    normalised, intensity_range = normalise_intensity(
        sitk.GetArrayFromImage(on_grid), sitk.GetArrayViewFromImage(mask_model))
    model_input = sitk.GetImageFromArray(normalised)
    model_input.CopyInformation(reference)
    timings["resample_normalise"] = time.perf_counter() - start
    return Preprocessed(image, brain.transform, model_input, mask_model, brain.mask,
                        intensity_range, brain.source, timings)
