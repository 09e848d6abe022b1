"""Case lists for `uadc evaluate` on the shared data, in the format `--cases` reads.

real_lesion_sets(data, out) writes out/<set>.csv for the real lesion sets (REAL_LESION_SETS):
  wml10_t1       the ten WML T1 scans (T1, real white-matter lesions, subtle on T1),
  brats_t1c      the BraTS T1c scans (contrast-enhanced T1: a modality shift, real gliomas),
and for T2 models wml10_t2, wml10_flair and brats_flair. healthy_case(...) makes a healthy head
a case (its all-zero lesion mask is written beside the other generated files, never into the
repository).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..datasets import brats_cases, wml_cases
from ..io import image_like, read_volume, write_volume


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
