"""The shared data sets: listing subjects and the deterministic, subject-level train/validation split.

A `Subject` is one scan; `subject` names the person it belongs to when a person has several
scans (sessions, sites), so that all of a person's scans fall on the same side of the split.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

VALIDATION_PERCENT = 25
SPLIT_RULE = (f"subject in validation when int(sha256(subject_id).hexdigest(), 16) % 100 < {VALIDATION_PERCENT}, "
              "else training; a cohort this leaves without a validation (or training) subject moves the "
              "subject with the smallest (largest) value across; every scan of a subject goes with it")


@dataclass(frozen=True)
class Subject:
    id: str
    image: Path
    brain_mask: Path | None = None
    lesion_mask: Path | None = None
    subject: str | None = None  # the person, when it differs from the scan id `id`

    @property
    def person(self) -> str:
        return self.subject or self.id


STATISTICS_PERCENT = 40
MIN_HELD_OUT_PERSONS = 4     # statistics are scored leave-one-out: each from at least three others
MIN_TRAINING_PERSONS = 2
STATISTICS_RULE = (f"training persons with {VALIDATION_PERCENT} <= int(sha256(subject_id).hexdigest(), 16) % 100 < "
                   f"{STATISTICS_PERCENT} are held out of training as the statistics cohort (healthy statistics "
                   f"of brains the model never saw); in a small cohort the persons with the next smallest values "
                   f"join it until it holds {MIN_HELD_OUT_PERSONS}, as long as {MIN_TRAINING_PERSONS} persons "
                   f"still train (a cohort too small for that fits its statistics on the validation scans too)")


def split_value(subject_id: str) -> int:
    return int(hashlib.sha256(subject_id.encode()).hexdigest(), 16) % 100


def is_validation(subject_id: str) -> bool:
    return split_value(subject_id) < VALIDATION_PERCENT


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
    """(training, validation) by the deterministic SPLIT_RULE, whole persons at a time."""
    persons = sorted({s.person for s in subjects})
    held_out = {p for p in persons if is_validation(p)}
    if len(persons) >= 2 and not held_out:  # small cohorts: never leave validation empty
        held_out = {min(persons, key=split_value)}
    elif len(persons) >= 2 and len(held_out) == len(persons):
        held_out.discard(max(persons, key=split_value))
    training = [s for s in subjects if s.person not in held_out]
    validation = [s for s in subjects if s.person in held_out]
    return training, validation


def brats_cases(root: Path, modality: str = "t1c") -> list[Subject]:
    return [Subject(case.name, case / f"{modality}.nii.gz", case / "brain_mask.nii.gz", case / "labels.nii.gz")
            for case in sorted(Path(root).iterdir()) if case.is_dir()]


def wml_cases(root: Path, modality: str = "t1") -> list[Subject]:
    return [Subject(case.name, case / f"{modality}.nii.gz", case / "brain_mask.nii.gz", case / "lesion_mask.nii.gz")
            for case in sorted(Path(root).iterdir()) if case.is_dir()]


def split_statistics(training: list[Subject]) -> tuple[list[Subject], list[Subject]]:
    """(training, statistics) by STATISTICS_RULE: the statistics cohort is held out of training
    so that the healthy statistics describe brains the model has not seen."""
    persons = sorted({s.person for s in training}, key=split_value)
    chosen = [p for p in persons if split_value(p) < STATISTICS_PERCENT]
    for person in persons:
        if len(chosen) >= MIN_HELD_OUT_PERSONS or len(persons) - len(chosen) <= MIN_TRAINING_PERSONS:
            break
        if person not in chosen:
            chosen.append(person)
    chosen = chosen[: max(0, len(persons) - MIN_TRAINING_PERSONS)]
    held_out = set(chosen)
    return [s for s in training if s.person not in held_out], [s for s in training if s.person in held_out]
