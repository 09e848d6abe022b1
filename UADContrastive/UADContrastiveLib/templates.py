"""The template space and the model grid.

The model grid is a fixed box in MNI152 space (LPS, 2 mm, 96 x 96 axial x 80 slices),
so every subject gives slices of the same size and anatomy lines up across subjects.

The shipped template (Resources/Templates) is a population average built from the
IXI *training* subjects (see build_template): their brains (DLMUSE > 0) registered
affinely to the MNI152 2009a brain from the nilearn wheel, then their whole heads and
brain masks averaged on the model grid. A whole-head template lets us register
whole-head input like-with-like (a brain-only template stretched over a head gives
Dice ~0.5), and an IXI-built head matches the scanner population of the training data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .resources import TEMPLATES

HEAD_FILE = "ixi_head_2mm.nii.gz"
BRAIN_PROBABILITY_FILE = "ixi_brain_probability_2mm.nii.gz"


@dataclass(frozen=True)
class ModelGrid:
    """An axis-aligned LPS box in MNI space; size is (x, y, z) voxels."""

    size: tuple[int, int, int] = (96, 96, 80)
    spacing: float = 2.0
    center_lps: tuple[float, float, float] = (0.0, 18.0, 8.0)  # MNI RAS (0, -18, 8)

    def reference(self) -> sitk.Image:
        image = sitk.Image([int(s) for s in self.size], sitk.sitkFloat32)
        image.SetSpacing([self.spacing] * 3)
        image.SetDirection(np.eye(3).ravel().tolist())
        origin = np.asarray(self.center_lps) - (np.asarray(self.size) - 1) / 2.0 * self.spacing
        image.SetOrigin(origin.tolist())
        return image

    def to_dict(self) -> dict:
        return {"size_xyz": list(self.size), "spacing_mm": self.spacing, "center_lps_mm": list(self.center_lps),
                "orientation": "LPS", "slice_axis": "axial (z)"}

    @classmethod
    def from_dict(cls, data: dict) -> ModelGrid:
        return cls(tuple(data["size_xyz"]), float(data["spacing_mm"]), tuple(data["center_lps_mm"]))


@dataclass
class Template:
    head: sitk.Image               # whole head, 0..1, on the model grid
    brain_probability: sitk.Image  # 0..1, on the model grid
    grid: ModelGrid
    name: str = "ixi-head-2mm"

    @property
    def brain(self) -> sitk.Image:
        """Skull-stripped template: the head inside brain probability > 0.5."""
        return sitk.Mask(self.head, sitk.Cast(self.brain_probability > 0.5, sitk.sitkUInt8))


def load_template(folder: Path = TEMPLATES, grid: ModelGrid | None = None) -> Template:
    head_path, probability_path = folder / HEAD_FILE, folder / BRAIN_PROBABILITY_FILE
    if not head_path.exists():
        raise FileNotFoundError(f"template {head_path} is missing; rebuild it with `uadc template` "
                                "or reinstall the extension.")
    head = sitk.Cast(sitk.ReadImage(str(head_path)), sitk.sitkFloat32) / 255.0
    probability = sitk.Cast(sitk.ReadImage(str(probability_path)), sitk.sitkFloat32) / 255.0
    grid = grid or ModelGrid(tuple(head.GetSize()), float(head.GetSpacing()[0]),
                             tuple(_center(head)))
    return Template(head, probability, grid)


def _center(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetOrigin()) + (np.asarray(image.GetSize()) - 1) / 2.0 * np.asarray(image.GetSpacing())


def nilearn_mni_path(kind: str = "t1") -> Path:
    """The MNI152 2009a files inside the nilearn wheel (kind: t1, gm, wm)."""
    import nilearn

    return (Path(nilearn.__file__).parent / "datasets" / "data"
            / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")


def mni_brain_template(grid: ModelGrid) -> Template:
    """The nilearn MNI152 2009a brain (brain-extracted) on the model grid, as a brain-only Template."""
    reference = grid.reference()
    identity = sitk.Transform(3, sitk.sitkIdentity)
    t1 = sitk.Resample(sitk.Cast(sitk.ReadImage(str(nilearn_mni_path("t1"))), sitk.sitkFloat32),
                       reference, identity, sitk.sitkLinear, 0.0)
    tissue = sum(sitk.Resample(sitk.Cast(sitk.ReadImage(str(nilearn_mni_path(k))), sitk.sitkFloat32),
                               reference, identity, sitk.sitkLinear, 0.0) for k in ("gm", "wm"))
    array = sitk.GetArrayFromImage(t1)
    t1 = t1 / float(np.percentile(array[array > 0], 99.5))
    return Template(t1, sitk.Clamp(tissue, sitk.sitkFloat32, 0.0, 1.0), grid, "mni152-2009a-brain")


def build_template(pairs: list[tuple[Path, Path]], out_dir: Path, grid: ModelGrid | None = None,
                   progress=None) -> Template:
    """Average the whole heads and brain masks of (image, parcellation) pairs in MNI space.

    Each brain (parcellation > 0) is registered like-with-like to the MNI152 brain; the
    head and the mask are then resampled on the model grid with that transform.
    """
    from .io import read_mask, read_volume, write_volume
    from .preprocess import preprocess, resample

    grid = grid or ModelGrid()
    mni = mni_brain_template(grid)
    reference = grid.reference()
    head_sum = np.zeros(reference.GetSize()[::-1], np.float64)
    mask_sum = np.zeros_like(head_sum)
    for index, (image_path, parcellation_path) in enumerate(pairs):
        image = read_volume(image_path)
        mask = read_mask(parcellation_path, image)
        result = preprocess(image, mni, grid, brain_mask=mask)
        head = sitk.GetArrayFromImage(resample(image, reference, result.transform))
        low, high = result.intensity_range
        head_sum += np.clip((head - low) / (high - low), 0, 1.5) / 1.5
        mask_sum += sitk.GetArrayViewFromImage(result.brain_mask_model)
        if progress:
            progress(index + 1, len(pairs))
    head = sitk.GetImageFromArray(np.round(255 * head_sum / len(pairs)).astype(np.uint8))
    probability = sitk.GetImageFromArray(np.round(255 * mask_sum / len(pairs)).astype(np.uint8))
    for image in (head, probability):
        image.CopyInformation(reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_volume(head, out_dir / HEAD_FILE)
    write_volume(probability, out_dir / BRAIN_PROBABILITY_FILE)
    return load_template(out_dir, grid)


def run_template(args) -> int:
    """`uadc template`: rebuild the shipped template from the first N IXI training subjects."""
    from .datasets import ixi_subjects, split
    from .progress import Progress

    training, _ = split(ixi_subjects(Path(args.data)))
    pairs = [(s.image, s.brain_mask) for s in training[: args.count] if s.brain_mask is not None]
    progress = Progress()
    build_template(pairs, Path(args.out) if args.out else TEMPLATES,
                   progress=lambda done, total: progress("template", done / total, f"{done}/{total} subjects"))
    progress.close()
    return 0
