"""Case lists for `uadc evaluate` on the shared data (maintainers' tool).

write_evaluation_sets(data, out) writes out/<set>.csv for:
  ixi_synthetic  validation IXI T1 heads with 1-3 synthetic lesions each (T1, synthetic),
  ixi_healthy    the same subjects untouched (T1, no lesions: false-positive rate),
  wml10_t1       the ten WML T1 scans (T1, real white-matter lesions, subtle on T1),
  brats_t1c      the six BraTS T1c scans (contrast-enhanced T1: a modality shift, real gliomas).
Synthetic images and empty masks are written under DIR (never into the repository).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..datasets import brats_cases, ixi_subjects, split, wml_cases
from ..io import image_like, read_mask, read_volume, write_volume
from ..preprocess.intensity import normalise_intensity
from ..training.corruptions import insert_synthetic_lesions

NOTES = {
    "ixi_synthetic": "IXI T1 validation subjects (whole heads) with synthetic lesions (1-3 per subject, "
                     "radius 6-16 mm, hypo- or hyperintense, smooth random shape); lesions are synthetic.",
    "ixi_healthy": "IXI T1 validation subjects, healthy: every flagged voxel is a false positive.",
    "wml10_t1": "WML10 T1 (skull-stripped, 0.94 x 0.94 x 3 mm): real white-matter lesions, subtle on T1.",
    "brats_t1c": "BraTS 2013 T1c (contrast-enhanced T1, z-scored): real gliomas; modality shift from T1.",
}


def write_cases_csv(path: Path, rows: list[dict]) -> None:
    """A case list in the format `uadc evaluate --cases` reads."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "image", "lesion_mask", "brain_mask", "dataset"])
        writer.writeheader()
        writer.writerows(rows)


def healthy_case(subject, images_dir: Path, dataset: str) -> dict:
    """A healthy head as a case: its own image and an all-zero lesion mask on its grid."""
    image = read_volume(subject.image)
    empty = image_like(np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8), image)
    empty_path = write_volume(empty, Path(images_dir) / f"{subject.id}_empty.nii.gz")
    return {"id": subject.id, "image": Path(subject.image).resolve(), "lesion_mask": empty_path,
            "brain_mask": "", "dataset": dataset}


def synthetic_ixi_case(subject, out_dir: Path, seed: int) -> tuple[Path, Path]:
    """Insert lesions into a native IXI head (inside its DLMUSE brain); returns (image, mask) paths."""
    image = read_volume(subject.image)
    brain = sitk.GetArrayFromImage(read_mask(subject.brain_mask, image)) > 0
    array = sitk.GetArrayFromImage(image)
    normalised, (low, high) = normalise_intensity(array, brain)
    rng = np.random.default_rng(seed)
    lesioned, lesion = insert_synthetic_lesions(normalised, brain, rng, count=int(rng.integers(1, 4)),
                                                spacing_mm=float(np.mean(image.GetSpacing())))
    out = array.copy()
    out[lesion] = lesioned[lesion] * (high - low) + low
    image_path = write_volume(image_like(out.astype(np.float32), image), out_dir / f"{subject.id}_synthetic.nii.gz")
    mask_path = write_volume(image_like(lesion.astype(np.uint8), image), out_dir / f"{subject.id}_lesion.nii.gz")
    return image_path, mask_path


def write_evaluation_sets(data: Path, out: Path, limit: int | None = None) -> dict[str, Path]:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    _, validation = split(ixi_subjects(data / "ixi_t1"))
    validation = validation[:limit]
    synthetic, healthy = [], []
    for index, subject in enumerate(validation):
        image_path, mask_path = synthetic_ixi_case(subject, out / "images", seed=index)
        synthetic.append({"id": subject.id, "image": image_path, "lesion_mask": mask_path, "brain_mask": "",
                          "dataset": "ixi_synthetic"})
        healthy.append(healthy_case(subject, out / "images", "ixi_healthy"))
    paths = {}
    for name, rows in {"ixi_synthetic": synthetic, "ixi_healthy": healthy}.items():
        paths[name] = out / f"{name}.csv"
        write_cases_csv(paths[name], rows)
    return {**paths, **real_lesion_sets(data, out)}


REAL_LESION_SETS = {  # set name: (data set, its image's modality)
    "wml10_t1": ("wml10", "t1"), "brats_t1c": ("brats2013", "t1c"),
    "wml10_t2": ("wml10", "t2"), "wml10_flair": ("wml10", "flair"), "brats_flair": ("brats2013", "flair"),
}


def real_lesion_sets(data: Path, out: Path, names: tuple[str, ...] = ("wml10_t1", "brats_t1c")) -> dict[str, Path]:
    """<name>.csv for each of `names` (REAL_LESION_SETS): the real lesion cases as they are, with
    their brain masks (wml10_t1 and brats_t1c for T1 models; wml10_t2, wml10_flair and brats_flair
    for T2 models)."""
    sets = {}
    for name in names:
        folder, modality = REAL_LESION_SETS[name]
        cases = (wml_cases if folder == "wml10" else brats_cases)(Path(data) / "lesions" / folder, modality)
        sets[name] = [{"id": c.id, "image": c.image.resolve(), "lesion_mask": c.lesion_mask.resolve(),
                       "brain_mask": c.brain_mask.resolve(), "dataset": name} for c in cases]
    paths = {}
    for name, rows in sets.items():
        paths[name] = Path(out) / f"{name}.csv"
        write_cases_csv(paths[name], rows)
    return paths
