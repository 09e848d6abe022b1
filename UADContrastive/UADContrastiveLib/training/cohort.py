"""A training cohort: the healthy scans `uadc train --data PATH` (`uadc cohort`, `uadc calibrate`) are given.

PATH may be
  - the IXI layout of ../shared/data (`images/*_T1.nii.gz`): the shipped models' data; brain
    masks come from the template, as in detection (the DLMUSE parcellations are not used);
  - a folder of scans, searched recursively: every image file SimpleITK reads, and every
    folder holding a DICOM series (one scan). Files named `<scan>_brain_mask.<ext>` (or
    `<scan>_mask`) are that scan's brain mask, a `brain_mask.<ext>` is the mask of every scan
    in its folder; other files with mask/label/seg in their name are not scans. A scan
    directly in PATH is its own subject; a scan below `PATH/<name>/` belongs to subject <name>;
  - a CSV file with a header `image[,brain_mask][,subject]`; relative paths are read from
    the CSV's folder.
Scan ids (file names without extension, with their sub-folders) name the cached volumes and
the split written in the model card; the split is by subject (datasets.split).
"""
from __future__ import annotations

import csv
import hashlib
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import SPLIT_RULE, STATISTICS_RULE, Subject, ixi_subjects, split, split_statistics
from ..errors import InputError
from ..io import IMAGE_EXTENSIONS, volume_stem
from .slice_cache import build_cache, default_cache_dir, is_cached

MIN_USABLE_SCANS = 3  # at least two to train on and one held out for calibration
MASK_WORDS = ("mask", "label", "seg")
DICOM_MAGIC_OFFSET = 128


@dataclass
class Cohort:
    """The scans found at `root` and how they were found (`kind`: ixi, folder or csv)."""

    root: Path
    kind: str
    subjects: list[Subject]
    ignored: list[str] = field(default_factory=list)  # files that were not taken as scans

    def describe(self) -> dict:
        return {"path": str(self.root), "kind": self.kind, "scans": len(self.subjects),
                "subjects": len({s.person for s in self.subjects})}


def read_cohort(path: str | Path) -> Cohort:
    """The scans at `path` (see the module docstring); InputError when there are none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(path, "does not exist.", "Give a folder of scans, a CSV file or the IXI folder.")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError(path, "is a file but not a CSV list of scans.",
                             "Give a folder of scans, or a CSV with a header image[,brain_mask][,subject].")
        return Cohort(path, "csv", read_scan_csv(path))
    if (path / "images").is_dir() and any((path / "images").glob("*_T1.nii.gz")):
        return Cohort(path, "ixi", [Subject(s.id, s.image) for s in ixi_subjects(path)])
    subjects, ignored = find_scans(path)
    if not subjects:
        raise InputError(path, f"holds no scans (image files {', '.join(IMAGE_EXTENSIONS[:5])} ..., "
                         "or DICOM series folders).", "Give a folder of scans or a CSV file listing them.")
    return Cohort(path, "folder", subjects, ignored)


def is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _is_image(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(IMAGE_EXTENSIONS) and not lower.endswith((".dcm", ".seg.nrrd"))


def _is_mask_name(stem: str) -> bool:
    return any(word in stem.lower() for word in MASK_WORDS)


def _scan_id(relative: Path) -> str:
    """Readable, file-system-safe id of a scan from its path below the cohort root."""
    parts = [*relative.parent.parts, volume_stem(relative)] if relative.parts else ["scan"]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(p for p in parts if p not in ("", ".")))


def _mask_for(image: Path, masks: dict[str, Path]) -> Path | None:
    stem = volume_stem(image)
    for name in (f"{stem}_brain_mask", f"{stem}_brainmask", f"{stem}_mask", "brain_mask"):
        if name in masks:
            return masks[name]
    return None


def find_scans(root: Path) -> tuple[list[Subject], list[str]]:
    """(scans, ignored file names) below `root`: image files and DICOM series folders."""
    subjects, ignored = [], []
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir()
                             and not any(part.startswith(".") for part in p.relative_to(root).parts))]
    dicom_roots: list[Path] = []
    for folder in folders:
        if any(folder.is_relative_to(d) for d in dicom_roots):
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if files and sum(is_dicom_file(p) for p in files[:3]) >= min(2, len(files)):
            dicom_roots.append(folder)
            images, masks = [folder], {}
        else:
            images = [p for p in files if _is_image(p.name) and not _is_mask_name(volume_stem(p))]
            masks = {volume_stem(p): p for p in files if _is_image(p.name) and _is_mask_name(volume_stem(p))}
            ignored += [str(p.relative_to(root)) for p in files if p not in images and p not in masks.values()]
        for image in images:
            relative = image.relative_to(root)
            person = relative.parts[0] if len(relative.parts) > 1 else _scan_id(relative)
            subjects.append(Subject(_scan_id(relative), image, _mask_for(image, masks), subject=person))
    return subjects, ignored


def read_scan_csv(path: Path) -> list[Subject]:
    """Scans listed in a CSV with a header image[,brain_mask][,subject]."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"could not be read as CSV ({error}).") from None
    if not rows or "image" not in rows[0]:
        raise InputError(path, "needs a header line with an 'image' column and at least one row.",
                         "Write e.g. 'image,brain_mask,subject' then one scan per line.")

    def resolve(value: str | None) -> Path | None:
        value = (value or "").strip()
        return None if not value else (Path(value) if Path(value).is_absolute() else path.parent / value)

    subjects, seen = [], set()
    for line, row in enumerate(rows, start=2):
        image = resolve(row.get("image"))
        if image is None:
            raise InputError(path, f"line {line} has an empty 'image' entry.")
        # below the CSV's folder: the relative path; elsewhere: its folder's name and its own
        scan_id = _scan_id(image.relative_to(path.parent) if image.is_relative_to(path.parent)
                           else Path(image.parent.name, image.name))
        if scan_id in seen:  # the same file name in two folders: keep both, apart
            scan_id = f"{scan_id}-{hashlib.sha256(str(image).encode()).hexdigest()[:6]}"
        seen.add(scan_id)
        subjects.append(Subject(scan_id, image, resolve(row.get("brain_mask")),
                                subject=(row.get("subject") or "").strip() or None))
    return subjects


def cohort_cache_name(cohort: Cohort) -> str:
    """Folder name of a cohort's slice cache: readable, and distinct for every cohort path."""
    digest = hashlib.sha256(str(cohort.root.resolve()).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', cohort.root.stem)}-{digest}"


def cohort_cache_dir(cohort: Cohort, cache_root: str | Path | None = None) -> Path:
    """The IXI layout keeps the cache root itself (where the shipped models' volumes have always
    been); any other cohort gets its own folder under `cohorts/`."""
    root = Path(cache_root or default_cache_dir())
    return root if cohort.kind == "ixi" else root / "cohorts" / cohort_cache_name(cohort)


def _say(message: str) -> None:
    print(f"uadc: {message}", file=sys.stderr, flush=True)


@dataclass
class PreparedCohort:
    """A cohort cached through the detection path and split by subject, ready to train on."""

    train_ids: list[str]
    val_ids: list[str]
    cache_dir: Path | None
    record: dict  # for the model card's `training`: data, modality, split, skipped scans
    subjects: dict[str, Subject] = field(default_factory=dict)


def prepare_cohort(config: dict, data_root: str | Path | None, dist_=None, say=_say) -> PreparedCohort:
    """List the cohort at `data_root`, preprocess every scan not yet cached (rank 0 of a
    distributed run `dist_`), skip and report the scans detection would refuse, and split the
    rest by subject. config['subjects'] {train, validation} instead names cached scans directly.
    InputError (exit 2) when fewer than MIN_USABLE_SCANS scans are usable."""
    modality = str(config.get("modality") or "T1")
    if config.get("subjects"):
        train_ids, val_ids = list(config["subjects"]["train"]), list(config["subjects"]["validation"])
        return PreparedCohort(train_ids, val_ids, config.get("cache_dir"),
                              {"modality": modality, "subjects": {"train": train_ids, "validation": val_ids}})
    if data_root is None:
        raise InputError(None, "no training data: give --data (a folder of scans, a CSV or the IXI folder).")
    cohort = read_cohort(data_root)
    cache_dir = cohort_cache_dir(cohort, config.get("cache_dir"))
    from ..preprocess.templates import load_template, template_for_modality

    template = load_template(name=config.get("template") or template_for_modality(modality))
    built = None
    if dist_ is None or dist_.main:
        say(f"{cohort.describe()['scans']} scans in {cohort.root} ({cohort.kind}); preprocessing through "
            f"the detection path into {cache_dir}")
        start = time.perf_counter()
        built = build_cache(cohort.subjects, cache_dir, template, modality=modality,
                            progress=lambda done, total, scan: say(
                                f"preprocessed {done}/{total} {scan} ({time.perf_counter() - start:.0f} s)"))
        for problem in built.refused.values():
            say(f"skipped {problem}")
        for scan_id, warnings in built.warnings.items():
            say(f"warning: {scan_id}: {'; '.join(warnings)}")
    if dist_ is not None:
        dist_.barrier()
    usable = [s for s in cohort.subjects if is_cached(s, cache_dir, template.name)]
    if len(usable) < MIN_USABLE_SCANS:
        raise InputError(cohort.root, f"only {len(usable)} of {len(cohort.subjects)} scans could be used "
                         f"(at least {MIN_USABLE_SCANS} are needed: two to train on, one held out).",
                         "See the skipped files above; add healthy scans or fix the refused ones.")
    training, validation = split(usable)
    training, statistics = split_statistics(training)
    record = {"data": cohort.describe(), "modality": modality, "template": template.name, "split_rule": SPLIT_RULE,
              "statistics_rule": STATISTICS_RULE,
              "subjects": {"train": [s.id for s in training], "validation": [s.id for s in validation],
                           "statistics": [s.id for s in statistics]},
              "scans": {s.id: _relative(s.image, cohort.root) for s in usable},
              "persons": {s.id: s.person for s in usable if s.person != s.id},
              "skipped": dict(built.refused) if built else {}, "warnings": dict(built.warnings) if built else {},
              "volumes": "preprocessed through the detection path (preprocess.checked); brain masks "
                         + ("given by the user where listed, else " if any(s.brain_mask for s in usable) else "")
                         + "the template brain mask carried back through the registration"}
    return PreparedCohort(record["subjects"]["train"], record["subjects"]["validation"], cache_dir, record,
                          {s.id: s for s in usable})


def _relative(path: Path, root: Path) -> str:
    base = root.parent if root.is_file() else root
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
