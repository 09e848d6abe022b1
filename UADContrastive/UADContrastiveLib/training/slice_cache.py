"""Training scans preprocessed once through the detection path, cached on the model grid,
and a 2D axial-slice Dataset.

Every scan is preprocessed ONCE (registration takes ~5-10 s) through exactly the path
`uadc detect` takes (preprocess.checked: the same refusals, the user's brain mask when given,
else the template brain mask), so that training, residual statistics and detection see the
same data. A scan detection would refuse is refused here too (reported, not cached). Each
is stored as `<scan id>.npz` holding `volume` (float32, (Z, Y, X) = (80, 96, 96), normalised,
0 outside the brain), `brain` (bool, same shape) and `source`, the fingerprint of the files
and template it was made from: an entry whose fingerprint differs is rebuilt, so cohorts never
read each other's volumes. The cache root is `~/.cache/uadcontrastive/slices-detection-path`
(UADC_SLICE_CACHE or the config's `cache_dir` override it); training.cohort gives each cohort
its own folder in it. Build one ahead of training with
    uadc cohort --data PATH [--modality T1]
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..datasets import Subject
from ..errors import InputError
from ..resources import user_cache_dir

MIN_SLICE_FRACTION = 0.15  # a slice is used when its brain area >= this share of the largest slice


def default_cache_dir() -> Path:
    if os.environ.get("UADC_SLICE_CACHE"):
        return Path(os.environ["UADC_SLICE_CACHE"])
    return user_cache_dir() / "slices-detection-path"


def cache_path(subject_id: str, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{subject_id}.npz"


def _file_fingerprint(path: Path | None) -> str:
    if path is None:
        return "-"
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return f"{path.resolve()}:missing"
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def scan_fingerprint(subject: Subject, template_name: str) -> str:
    """What a cached volume was made from: image and mask files (path, size, time) and template."""
    return f"{template_name}|{_file_fingerprint(subject.image)}|{_file_fingerprint(subject.brain_mask)}"


def is_cached(subject: Subject, cache_dir: Path, template_name: str) -> bool:
    path = cache_path(subject.id, cache_dir)
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            return "source" in data.files and str(data["source"]) == scan_fingerprint(subject, template_name)
    except (OSError, ValueError, EOFError):
        return False


def preprocess_subject(subject: Subject, template, modality: str = "T1") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(volume float32 (Z,Y,X), brain bool, warnings) of one scan on the model grid; InputError
    for a scan the detection path refuses."""
    import SimpleITK as sitk

    from ..io import read_mask, read_volume
    from ..preprocess.checked import preprocess_checked

    image = read_volume(subject.image)
    mask = read_mask(subject.brain_mask, image) if subject.brain_mask else None
    result, quality = preprocess_checked(image, template, mask, modality, source=subject.image)
    volume = sitk.GetArrayFromImage(result.model_input).astype(np.float32)
    brain = sitk.GetArrayFromImage(result.brain_mask_model) > 0
    return volume, brain, quality["warnings"]


@dataclass
class CacheReport:
    """What build_cache did: scan ids now cached, and per scan id the refusal or the warnings."""

    ready: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def build_cache(subjects: Sequence[Subject], cache_dir: Path | None = None, template=None,
                progress: Callable[[int, int, str], None] | None = None, modality: str = "T1") -> CacheReport:
    """Preprocess every scan not yet cached (or cached from other files); a scan the detection
    path refuses is reported in `refused` and skipped. Writes are atomic (temporary file +
    rename), so an interrupted run resumes safely."""
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    if template is None:
        from ..preprocess.templates import load_template
        template = load_template()
    report = CacheReport()
    for index, subject in enumerate(subjects):
        path = cache_path(subject.id, cache_dir)
        if not is_cached(subject, cache_dir, template.name):
            try:
                volume, brain, warnings = preprocess_subject(subject, template, modality)
            except InputError as error:
                report.refused[subject.id] = str(error)
            else:
                tmp = path.with_name(f".{path.stem}.part.npz")
                np.savez_compressed(tmp, volume=volume, brain=brain,
                                    source=np.array(scan_fingerprint(subject, template.name)))
                os.replace(tmp, path)
                if warnings:
                    report.warnings[subject.id] = warnings
        if subject.id not in report.refused:
            report.ready.append(subject.id)
        if progress:
            progress(index + 1, len(subjects), subject.id)
    return report


def load_subject(subject_id: str, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(cache_path(subject_id, cache_dir)) as data:
        return data["volume"].astype(np.float32), data["brain"].astype(bool)


def brain_slices(brain: np.ndarray, min_fraction: float = MIN_SLICE_FRACTION) -> np.ndarray:
    """Indices (axis 0) of slices whose brain area >= min_fraction x the largest slice's."""
    areas = brain.reshape(brain.shape[0], -1).sum(1)
    if areas.max() == 0:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(areas >= min_fraction * areas.max())


class SliceDataset:
    """Axial slices of cached subjects: items are (image (1,Y,X) float32, brain (1,Y,X) float32).

    All selected slices are held in memory (8 k slices x 96 x 96 x 4 B ~ 300 MB).
    `transform(image, brain) -> image` is applied per item (augmentation).
    """

    def __init__(self, subject_ids: Sequence[str], cache_dir: Path | None = None,
                 min_fraction: float = MIN_SLICE_FRACTION, transform=None):
        images, brains, index = [], [], []
        for subject_id in subject_ids:
            volume, brain = load_subject(subject_id, cache_dir)
            keep = brain_slices(brain, min_fraction)
            images.append(volume[keep])
            brains.append(brain[keep])
            index += [(subject_id, int(z)) for z in keep]
        shape = (0, 96, 96)
        self.images = np.concatenate(images) if images else np.zeros(shape, np.float32)
        self.brains = np.concatenate(brains) if brains else np.zeros(shape, bool)
        self.index = index
        self.positions = np.array([z for _, z in index], dtype=np.int64)  # axial slice on the model grid
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        image = torch.from_numpy(self.images[i][None].copy())
        brain = torch.from_numpy(self.brains[i][None].astype(np.float32))
        if self.transform is not None:
            image = self.transform(image, brain)
        return image, brain


def validation_slices(ids: list[str], cache_dir, count: int, min_fraction: float):
    """A fixed, evenly spread subset of `count` validation slices: (images, brains) (N,1,H,W) tensors."""
    import torch

    data = SliceDataset(ids, cache_dir, min_fraction)
    if len(data) == 0:
        return torch.zeros(0, 1, 96, 96), torch.zeros(0, 1, 96, 96)
    pick = np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int)
    return (torch.from_numpy(data.images[pick][:, None].copy()),
            torch.from_numpy(data.brains[pick][:, None].astype(np.float32)))
