"""Preprocessed IXI volumes cached on the model grid, and a 2D axial-slice Dataset.

Every subject is preprocessed ONCE (registration takes ~5 s) through exactly the path
`uadc detect` takes (template registration, template brain mask carried back), so that
training, residual statistics and detection see the same data; stored as `<id>.npz` holding `volume` (float32, (Z, Y, X) =
(80, 96, 96), normalised, 0 outside the brain) and `brain` (bool, same shape). The
cache lives outside the repository (default `~/.cache/uadcontrastive/slices`,
overridden by the `cache_dir` argument or the UADC_SLICE_CACHE environment variable).

Command line (run in the background before training):
    python -m UADContrastiveLib.training.slice_cache --data ../shared/data/ixi_t1 [--cache DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..datasets import Subject, ixi_subjects, split
from ..resources import user_cache_dir

MIN_SLICE_FRACTION = 0.15  # a slice is used when its brain area >= this share of the largest slice


def default_cache_dir() -> Path:
    if os.environ.get("UADC_SLICE_CACHE"):
        return Path(os.environ["UADC_SLICE_CACHE"])
    return user_cache_dir() / "slices-detection-path"


def cache_path(subject_id: str, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{subject_id}.npz"


def preprocess_subject(subject: Subject, template) -> tuple[np.ndarray, np.ndarray]:
    """(volume float32 (Z,Y,X), brain bool) of one subject on the model grid."""
    import SimpleITK as sitk

    from ..io import read_volume
    from ..preprocess.pipeline import preprocess

    image = read_volume(subject.image)
    result = preprocess(image, template, source=subject.image)
    volume = sitk.GetArrayFromImage(result.model_input).astype(np.float32)
    brain = sitk.GetArrayFromImage(result.brain_mask_model) > 0
    return volume, brain


def build_cache(subjects: Sequence[Subject], cache_dir: Path | None = None, template=None,
                progress: Callable[[int, int, str], None] | None = None) -> list[str]:
    """Preprocess every subject not yet cached; returns the ids now in the cache.

    Writes are atomic (temporary file + rename), so an interrupted run resumes safely.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for index, subject in enumerate(subjects):
        path = cache_path(subject.id, cache_dir)
        if not path.exists():
            if template is None:
                from ..preprocess.templates import load_template
                template = load_template()
            volume, brain = preprocess_subject(subject, template)
            tmp = path.with_name(f".{path.stem}.part.npz")
            np.savez_compressed(tmp, volume=volume, brain=brain)
            os.replace(tmp, path)
        done.append(subject.id)
        if progress:
            progress(index + 1, len(subjects), subject.id)
    return done


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


def subject_ids(config: dict, data_root: Path | None, dist_=None) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): config['subjects'] if given, else split of data_root
    (building the slice cache for missing subjects on rank 0 of a distributed run `dist_`)."""
    if config.get("subjects"):
        return list(config["subjects"]["train"]), list(config["subjects"]["validation"])
    subjects = ixi_subjects(Path(data_root))
    if not subjects:
        raise FileNotFoundError(f"no IXI subjects (images/*_T1.nii.gz) under {data_root}")
    training, validation = split(subjects)
    if dist_ is None or dist_.main:
        build_cache(training + validation, config.get("cache_dir"))
    if dist_ is not None:
        dist_.barrier()
    return [s.id for s in training], [s.id for s in validation]


def validation_slices(ids: list[str], cache_dir, count: int, min_fraction: float):
    """A fixed, evenly spread subset of `count` validation slices: (images, brains) (N,1,H,W) tensors."""
    import torch

    data = SliceDataset(ids, cache_dir, min_fraction)
    if len(data) == 0:
        return torch.zeros(0, 1, 96, 96), torch.zeros(0, 1, 96, 96)
    pick = np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int)
    return (torch.from_numpy(data.images[pick][:, None].copy()),
            torch.from_numpy(data.brains[pick][:, None].astype(np.float32)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="ixi_t1 folder")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--part", default="0/1", help="K/N: build only every N-th subject from K (parallel builds)")
    args = parser.parse_args(argv)
    subjects = ixi_subjects(args.data)
    training, validation = split(subjects)
    part, parts = (int(v) for v in args.part.split("/"))
    ordered = (training + validation)[part::parts]
    start = time.perf_counter()

    def report(done, total, subject_id):
        print(f"{done}/{total} {subject_id} {time.perf_counter() - start:.0f}s", flush=True)

    build_cache(ordered, args.cache, progress=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
