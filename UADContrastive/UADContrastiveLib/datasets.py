"""The shared data sets: listing subjects and the deterministic train/validation split."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

VALIDATION_PERCENT = 25
SPLIT_RULE = (f"subject in validation when int(sha256(subject_id).hexdigest(), 16) % 100 < {VALIDATION_PERCENT}, "
              "else training")


@dataclass(frozen=True)
class Subject:
    id: str
    image: Path
    brain_mask: Path | None = None
    lesion_mask: Path | None = None


def is_validation(subject_id: str) -> bool:
    return int(hashlib.sha256(subject_id.encode()).hexdigest(), 16) % 100 < VALIDATION_PERCENT


def ixi_subjects(root: Path) -> list[Subject]:
    """IXI T1 subjects with their DLMUSE parcellation (used as brain mask), sorted by id."""
    root = Path(root)
    subjects = []
    for image in sorted((root / "images").glob("*_T1.nii.gz")):
        subject_id = image.name[: -len("_T1.nii.gz")]
        parcellation = root / "brain_parcellation" / f"{subject_id}_T1_DLMUSE.nii.gz"
        subjects.append(Subject(subject_id, image, parcellation if parcellation.exists() else None))
    return subjects


def split(subjects: list[Subject]) -> tuple[list[Subject], list[Subject]]:
    """(training, validation) by the deterministic SPLIT_RULE."""
    training = [s for s in subjects if not is_validation(s.id)]
    validation = [s for s in subjects if is_validation(s.id)]
    return training, validation


def brats_cases(root: Path, modality: str = "t1c") -> list[Subject]:
    return [Subject(case.name, case / f"{modality}.nii.gz", case / "brain_mask.nii.gz", case / "labels.nii.gz")
            for case in sorted(Path(root).iterdir()) if case.is_dir()]


def wml_cases(root: Path, modality: str = "t1") -> list[Subject]:
    return [Subject(case.name, case / f"{modality}.nii.gz", case / "brain_mask.nii.gz", case / "lesion_mask.nii.gz")
            for case in sorted(Path(root).iterdir()) if case.is_dir()]
