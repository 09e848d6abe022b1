"""A deformable refinement of the affine registration, used only to carry the label atlas onto a
scan (the findings' names): the template brain is warped onto the scan as it lies on the model
grid after the affine step. Anomaly scores never see it.

An affine fit cannot follow thin cortex (cingulate, insula) or the ventricles, whose size grows
with age: carried affinely, the atlas reached Dice 0.50-0.75 there on heads it was not built
from; after this step every lobe reaches 0.71-0.95 (docs/findings.md).

Method: ITK's fast symmetric-forces demons on a pyramid of the model grid (8, 4 and 2 mm), after
matching the template's histogram to the scan's brain. Demons needs like intensities; both images
are brains on the same grid and of the same contrast (the template the detection registered to),
so histogram matching gives them (without it the lobes' Dice fell to 0.0-0.9). The displacement
field is smoothed with a Gaussian of FIELD_SIGMA_VOXELS voxels at every level, which keeps it
smooth where the image gives no evidence. Voxels the detection flagged are given the template's
own intensities in the fixed image, so a lesion exerts no force on the field (cost-function
masking); what it does not flag is held by the smoothing: a BraTS glioma left unmasked moved the
labels inside it no more than elsewhere in the brain (docs/findings.md).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .registration import single_threaded_itk

# (block factor of the model grid, demons iterations): 8 mm finds the large shifts cheaply, 2 mm
# refines. On four IXI heads 40/20/10 came within 0.02 Dice of 50/50 iterations at 4/2 mm in a quarter of
# the time (2 CPU s per head, the 2 mm iterations dominate).
DEMONS_LEVELS = ((4, 40), (2, 20), (1, 10))
# Field smoothing in voxels of each level (ITK's demons smooth in voxel units). 1.0 follows the
# ventricles slightly better, 2.0 loses the cingulate (limbic Dice 0.70); 1.5 is the middle.
FIELD_SIGMA_VOXELS = 1.5
HISTOGRAM_LEVELS, MATCH_POINTS = 128, 15
# A flagged region is widened by this many voxels before it is masked from the demons forces:
# its boundary, where the intensity changes most, would otherwise still pull.
LESION_MARGIN_VOXELS = 2


def register_deformable(fixed: sitk.Image, moving: sitk.Image, ignore: np.ndarray | None = None
                        ) -> sitk.DisplacementFieldTransform:
    """The displacement field that puts `moving` onto `fixed` (both brains, 0 outside, on the same
    grid): a transform mapping fixed-grid points to moving points, ITK's convention, so
    `sitk.Resample(labels_of_moving, fixed, transform, sitkNearestNeighbor)` warps moving's labels.
    `ignore` (a boolean (z, y, x) array on fixed's grid) marks voxels that must not pull the
    field. One ITK thread: the same images give the same field on every run."""
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.HistogramMatching(sitk.Cast(moving, sitk.sitkFloat32), fixed, HISTOGRAM_LEVELS, MATCH_POINTS,
                                    thresholdAtMeanIntensity=True)
    if ignore is not None and ignore.any():
        fixed = _filled(fixed, moving, ndimage.binary_dilation(ignore, iterations=LESION_MARGIN_VOXELS))
    field = None
    with single_threaded_itk():
        for factor, iterations in DEMONS_LEVELS:
            fixed_level, moving_level = (_level(image, factor) for image in (fixed, moving))
            demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
            demons.SetNumberOfIterations(iterations)
            demons.SetStandardDeviations(FIELD_SIGMA_VOXELS)
            demons.SetNumberOfThreads(1)
            if field is None:
                field = demons.Execute(fixed_level, moving_level)
            else:
                field = demons.Execute(fixed_level, moving_level, _on_grid(field, fixed_level))
        field = _on_grid(field, fixed)
    if not np.isfinite(sitk.GetArrayViewFromImage(field)).all():
        raise RuntimeError("the deformable registration gave a non-finite displacement field")
    return sitk.DisplacementFieldTransform(field)


def _level(image: sitk.Image, factor: int) -> sitk.Image:
    """`image` on a grid `factor` times coarser, smoothed against aliasing (itself at factor 1)."""
    if factor == 1:
        return image
    smoothed = sitk.SmoothingRecursiveGaussian(image, 0.5 * factor * max(image.GetSpacing()))
    return sitk.Shrink(smoothed, [factor] * image.GetDimension())


def _on_grid(field: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A displacement field resampled (linearly, in physical space) onto `reference`'s grid."""
    return sitk.Resample(field, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)


def _filled(fixed: sitk.Image, moving: sitk.Image, ignore: np.ndarray) -> sitk.Image:
    """`fixed` with `moving`'s intensities where `ignore` is set: no difference, no force there."""
    array = sitk.GetArrayFromImage(fixed)
    array[ignore] = sitk.GetArrayViewFromImage(moving)[ignore]
    filled = sitk.GetImageFromArray(array)
    filled.CopyInformation(fixed)
    return filled
