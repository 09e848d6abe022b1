"""Where the subject lies relative to the template: canonical orientation, affine
registration (on a pyramid of our own, coarse to fine) and resampling with the transform found.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import SimpleITK as sitk

from .intensity import INTENSITY_RANGE

# Registration runs on a pyramid of its own (see `Pyramid`), coarse to fine. Each level is
# (block factor of the template's 2 mm grid, share of the template's voxels sampled per
# iteration, first step in mm, last step in mm). A 2 mm model grid needs ~1 mm accuracy, not
# 0.01 mm. The similarity transform is found at 8 and 4 mm, the affine at 8, 4 and 2 mm; the 2 mm
# level only refines (small first step, 4 % of the voxels), which is where most of the time went.
# Measured on 4 IXI heads, 3 BraTS and 4 WML cases (docs/speed.md): 3x less CPU than ITK's own
# 3-level pyramid run twice, with the same brain-mask Dice.
SIMILARITY_LEVELS = ((4, 0.5, 2.0, 0.02), (2, 0.1, 2.0, 0.02))
AFFINE_LEVELS = ((4, 0.5, 2.0, 0.02), (2, 0.1, 2.0, 0.02), (1, 0.04, 0.5, 0.05))
MAX_ITERATIONS = 80
# What registration sees: the whole volume's (or the brain's) robust range mapped to 0..1,
# clipped like the model grid (INTENSITY_RANGE).
REGISTRATION_PERCENTILES = (1, 99.5)


def canonical_orientation(image: sitk.Image) -> sitk.Image:
    """Reorient the voxel axes to LPS. Physical positions do not change, only the array layout."""
    return sitk.DICOMOrient(image, "LPS")


def block_factors(spacing, target_spacing) -> list[int]:
    """Whole factors per axis that bring `spacing` as close to `target_spacing` as possible
    without going past it (1 where the axis is already as coarse)."""
    return [max(1, int(t / s + 1e-6)) for s, t in zip(spacing, target_spacing)]


def no_finer_than(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """`image` averaged over whole blocks of voxels so that no axis is finer than the reference's.

    The registration metric samples the template (2 mm), so a 1 mm input adds nothing to its
    accuracy, but every pyramid level smooths and differentiates the whole input: on a
    240 x 240 x 155 volume that made registration 5x slower. Block averaging (not subsampling)
    keeps it free of aliasing; the transform stays in physical space, so nothing else changes."""
    factors = block_factors(image.GetSpacing(), reference.GetSpacing())
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def coarser(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """`image` as seen on a grid of about `spacing_mm`: Gaussian-smoothed (sigma half the spacing,
    against aliasing) and block-averaged wherever an axis is finer than that."""
    smoothed = sitk.SmoothingRecursiveGaussian(image, [0.5 * spacing_mm] * image.GetDimension())
    factors = block_factors(image.GetSpacing(), [spacing_mm] * image.GetDimension())
    return sitk.BinShrink(smoothed, factors) if max(factors) > 1 else smoothed


class Pyramid:
    """An image and its coarser versions (`coarser`) by whole block factors, each made once.

    Our pyramid rather than ITK's, for two reasons. ITK rebuilds the fixed (template) pyramid
    on every registration run (two per subject) although the template never changes; kept in
    the Template, its levels are made once per process. And ITK smooths but does not shrink the
    moving image, so at every level its metric computes the image gradient over the whole input
    (0.2 CPU s per level on an IXI head, six levels): here each level registers images that are
    both at that level's spacing."""

    def __init__(self, image: sitk.Image):
        self.image = sitk.Cast(image, sitk.sitkFloat32)
        self._levels = {1: self.image}

    def level(self, factor: int) -> sitk.Image:
        if factor not in self._levels:
            self._levels[factor] = coarser(self.image, factor * max(self.image.GetSpacing()))
        return self._levels[factor]


_ITK_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def single_threaded_itk():
    """ITK's default thread count set to 1 for the block, restored after.

    Mattes mutual information with random sampling sums its per-thread partial results in
    whatever order the threads finish, so a multi-threaded registration of the same scan can
    land 0.2-0.6 mm apart from one run to the next (measured: BraTS pat0006 refused by the
    registration check on one run, accepted on another). With one thread it is repeatable bit
    for bit, and no slower where it matters: in `uadc detect` the other core is busy importing
    torch meanwhile (BraTS 1 mm, under load: 1.5 s with one thread, 1.7-2.1 s with two).
    ITK work that other threads start meanwhile also runs on one thread, slower but unchanged."""
    with _ITK_THREADS_LOCK:
        previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            yield
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def register_affine(fixed: sitk.Image | Pyramid, moving: sitk.Image, seed: int = 1) -> sitk.Transform:
    """Affine registration by Mattes mutual information: similarity, then affine, coarse to fine
    on the levels SIMILARITY_LEVELS and AFFINE_LEVELS (a Pyramid of the fixed image keeps its
    levels for the next call).

    Returns the transform mapping fixed-space points to moving-space points (ITK
    convention), so `sitk.Resample(moving, fixed, transform)` puts moving on fixed's grid.
    Repeatable: the same images give the same transform on every run (see single_threaded_itk).
    """
    with single_threaded_itk():
        return _register_affine(fixed, moving, seed)


def _register_affine(fixed: sitk.Image | Pyramid, moving: sitk.Image, seed: int) -> sitk.Transform:
    fixed = fixed if isinstance(fixed, Pyramid) else Pyramid(fixed)
    moving = sitk.Cast(no_finer_than(moving, fixed.image), sitk.sitkFloat32)
    moving_levels = {1: moving}
    transform = sitk.CenteredTransformInitializer(
        fixed.image, moving, sitk.Similarity3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)

    def run(transform, factor, sampling, first_step, last_step):
        if factor not in moving_levels:
            moving_levels[factor] = coarser(moving, factor * max(fixed.image.GetSpacing()))
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(sampling, seed)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=first_step, minStep=last_step, numberOfIterations=MAX_ITERATIONS, relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed.level(factor), moving_levels[factor])
        return transform

    for level in SIMILARITY_LEVELS:
        transform = run(transform, *level)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(transform.GetCenter())
    affine.SetMatrix(transform.GetMatrix())
    affine.SetTranslation(transform.GetTranslation())
    for level in AFFINE_LEVELS:
        affine = run(affine, *level)
    return affine


def resample(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
             interpolator=sitk.sitkLinear, default: float = 0.0) -> sitk.Image:
    """`image` sampled on `reference`'s grid, with `transform` mapping reference points to image points."""
    return sitk.Resample(image, reference, transform, interpolator, default, image.GetPixelID())


def scaled_for_registration(image: sitk.Image) -> sitk.Image:
    """Robust 0..1 scaling over the whole volume, so registration sees like intensity ranges."""
    array = sitk.GetArrayViewFromImage(image)
    low, high = np.percentile(array, REGISTRATION_PERCENTILES)
    return sitk.Clamp((image - float(low)) / max(float(high - low), 1e-6), sitk.sitkFloat32, *INTENSITY_RANGE)


def scaled_for_registration_in_mask(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """The same scaling from the brain's voxels only; 0 outside the mask."""
    array = sitk.GetArrayFromImage(image)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    low, high = np.percentile(array[inside], REGISTRATION_PERCENTILES)
    scaled = np.clip((array - low) / max(high - low, 1e-6), *INTENSITY_RANGE).astype(np.float32)
    scaled[~inside] = 0.0
    out = sitk.GetImageFromArray(scaled)
    out.CopyInformation(image)
    return out
