"""Preprocessing with an exact inverse: input grid <-> model grid.

Steps, each a function you can call alone:
  canonical_orientation -> register_affine (template <-> subject) -> brain mask
  -> resample to the model grid -> normalise_intensity.
`preprocess()` chains them into a `Preprocessed` object that remembers the transform,
so `to_input_grid()` puts any model-grid map back on the input's exact grid.

Registration is like-with-like: a whole head is registered to the template head
(then the template's brain probability is carried back as the mask); a brain that is
already known (skull-stripped input, user mask, training parcellation) is registered
to the template brain.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from .templates import ModelGrid, Template

# A skull-stripped brain's foreground is 0.9-2 L; a whole head (or a noisy background) far more.
SKULL_STRIPPED_MAX_ML = 2600.0
PLAUSIBLE_BRAIN_ML = (500.0, 2600.0)
INTENSITY_PERCENTILES = (1.0, 99.0)
INTENSITY_CLIP = (0.0, 1.5)
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

def canonical_orientation(image: sitk.Image) -> sitk.Image:
    """Reorient the voxel axes to LPS. Physical positions do not change, only the array layout."""
    return sitk.DICOMOrient(image, "LPS")


def foreground_volume_ml(image: sitk.Image) -> tuple[float, np.ndarray]:
    """Volume of the largest connected region that differs from the background value."""
    array = sitk.GetArrayViewFromImage(image)
    values, counts = np.unique(array[:: 4, :: 4, :: 4], return_counts=True)
    background = values[np.argmax(counts)]
    foreground = array != background
    labels, count = ndimage.label(foreground)
    if count == 0:
        return 0.0, foreground
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = fill_holes(labels == int(np.argmax(sizes)))
    return float(largest.sum() * np.prod(image.GetSpacing()) / 1000.0), largest


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """ndimage.binary_fill_holes (6-connected background) by labelling the background once:
    a hole is a background component that does not touch the array's border. Same result, but
    one pass instead of a dilation repeated until nothing changes (seconds on a 1 mm volume)."""
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask
    border = np.zeros(count + 1, dtype=bool)
    for axis in range(background.ndim):
        for end in (0, -1):
            border[np.take(background, end, axis=axis)] = True
    border[0] = False  # label 0 is the mask itself, which stays
    return ~border[background]


def looks_skull_stripped(image: sitk.Image) -> bool:
    """True when the non-background region is brain-sized (BraTS, WML10, the MNI brain)."""
    volume, _ = foreground_volume_ml(image)
    return 0 < volume < SKULL_STRIPPED_MAX_ML


def foreground_mask(image: sitk.Image) -> sitk.Image:
    """uint8 mask of the largest non-background region, holes filled (for skull-stripped input)."""
    _, largest = foreground_volume_ml(image)
    mask = sitk.GetImageFromArray(largest.astype(np.uint8))
    mask.CopyInformation(image)
    return mask


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


def normalise_intensity(array: np.ndarray, mask: np.ndarray,
                        percentiles=INTENSITY_PERCENTILES) -> tuple[np.ndarray, tuple[float, float]]:
    """Map brain percentiles (p1, p99) to (0, 1), clip, zero outside the mask."""
    values = array[mask > 0]
    if values.size == 0:
        raise ValueError("empty brain mask")
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        high = low + 1.0
    normalised = np.clip((array - low) / (high - low), *INTENSITY_CLIP).astype(np.float32)
    normalised[mask == 0] = 0.0
    return normalised, (low, high)


@dataclass
class Preprocessed:
    """One subject on the model grid, plus everything needed to go back to its input grid."""

    input_reference: sitk.Image          # the input's grid (a 1-voxel-deep copy is not enough: we keep the image)
    transform: sitk.Transform            # model-grid point -> input point
    model_input: sitk.Image              # float32, model grid, normalised, 0 outside the brain
    brain_mask_model: sitk.Image         # uint8, model grid
    brain_mask_input: sitk.Image         # uint8, input grid
    intensity_range: tuple[float, float]  # input intensities mapped to 0 and 1
    brain_source: str                    # how the brain mask was obtained
    timings: dict = field(default_factory=dict)
    _inverse: sitk.Transform | None = field(default=None, init=False, repr=False, compare=False)

    def to_input_grid(self, model_image: sitk.Image | np.ndarray, interpolator=sitk.sitkLinear,
                      default: float = 0.0) -> sitk.Image:
        """Carry a model-grid map back onto the input's exact grid (size, spacing, origin, direction)."""
        if isinstance(model_image, np.ndarray):
            array = model_image
            model_image = sitk.GetImageFromArray(array.astype(np.float32))
            model_image.CopyInformation(self.model_input)
        if self._inverse is None:
            self._inverse = self.transform.GetInverse()
        return sitk.Resample(model_image, self.input_reference, self._inverse,
                             interpolator, default, model_image.GetPixelID())

    def intensity_to_input(self, normalised: np.ndarray) -> np.ndarray:
        low, high = self.intensity_range
        return (normalised * (high - low) + low).astype(np.float32)

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


def brain_volume_ml(mask: sitk.Image) -> float:
    return float(sitk.GetArrayViewFromImage(mask).sum() * np.prod(mask.GetSpacing()) / 1000.0)


def preprocess(image: sitk.Image, template: Template, grid: ModelGrid | None = None,
               brain_mask: sitk.Image | None = None, skull_stripped: str = "auto",
               source: str | None = None) -> Preprocessed:
    """Bring one input volume onto the model grid; see the module docstring.

    brain_mask: a known brain mask on the input grid (user's, or a training parcellation).
    skull_stripped: "auto" (decide from the foreground volume), "yes" or "no".
    """
    grid = grid or template.grid
    timings: dict[str, float] = {}
    start = time.perf_counter()
    canonical = canonical_orientation(image)
    timings["orientation"] = time.perf_counter() - start

    start = time.perf_counter()
    if brain_mask is not None:
        brain_source = "given"
        mask_input = sitk.Cast(brain_mask > 0, sitk.sitkUInt8)
    else:
        mask_input = None
        if skull_stripped in ("yes", "auto"):
            foreground_ml, foreground = foreground_volume_ml(image)
            if skull_stripped == "yes" or 0 < foreground_ml < SKULL_STRIPPED_MAX_ML:
                brain_source = "skull-stripped input (non-background region)"
                mask_input = sitk.GetImageFromArray(foreground.astype(np.uint8))
                mask_input.CopyInformation(image)
        if mask_input is None:
            brain_source = "template brain carried back through the registration"
    if mask_input is not None:
        mask_canonical = canonical_orientation(mask_input)
        moving = sitk.Mask(canonical, mask_canonical, outsideValue=float(np.percentile(
            sitk.GetArrayViewFromImage(canonical), 1)))
        moving = _rescale_in_mask(moving, mask_canonical)
        transform = register_affine(template.pyramid("brain"), moving)
    else:
        transform = register_affine(template.pyramid("head"), _rescale(canonical))
    timings["registration"] = time.perf_counter() - start

    start = time.perf_counter()
    if mask_input is None:
        probability = resample(template.brain_probability, image, transform.GetInverse())
        mask_input = sitk.Cast(probability > 0.5, sitk.sitkUInt8)
    mask_input.CopyInformation(image)
    volume = brain_volume_ml(mask_input)
    if not PLAUSIBLE_BRAIN_ML[0] <= volume <= PLAUSIBLE_BRAIN_ML[1]:
        raise InputError(source, f"no plausible brain found: the brain mask holds {volume:.0f} mL "
                         f"(a brain is {PLAUSIBLE_BRAIN_ML[0]:.0f}-{PLAUSIBLE_BRAIN_ML[1]:.0f} mL).",
                         "Check that this is a brain MRI, or give a brain mask with --brain-mask.")
    reference = grid.reference()
    mask_model = resample(sitk.Cast(mask_input, sitk.sitkFloat32), reference, transform) > 0.5
    mask_model = sitk.Cast(mask_model, sitk.sitkUInt8)
    timings["brain_mask"] = time.perf_counter() - start

    start = time.perf_counter()
    on_grid = resample(image, reference, transform, sitk.sitkLinear,
                       float(np.min(sitk.GetArrayViewFromImage(image))))
    normalised, intensity_range = normalise_intensity(
        sitk.GetArrayFromImage(on_grid), sitk.GetArrayViewFromImage(mask_model))
    model_input = sitk.GetImageFromArray(normalised)
    model_input.CopyInformation(reference)
    timings["resample_normalise"] = time.perf_counter() - start
    return Preprocessed(image, transform, model_input, mask_model, mask_input,
                        intensity_range, brain_source, timings)


def _rescale(image: sitk.Image) -> sitk.Image:
    """Robust 0..1 scaling over the whole volume, so registration sees like intensity ranges."""
    array = sitk.GetArrayViewFromImage(image)
    low, high = np.percentile(array, (1, 99.5))
    return sitk.Clamp((image - float(low)) / max(float(high - low), 1e-6), sitk.sitkFloat32, 0.0, 1.5)


def _rescale_in_mask(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    low, high = np.percentile(array[inside], (1, 99.5))
    scaled = np.clip((array - low) / max(high - low, 1e-6), 0, 1.5).astype(np.float32)
    scaled[~inside] = 0.0
    out = sitk.GetImageFromArray(scaled)
    out.CopyInformation(image)
    return out
