"""Building the shipped templates (`uadc template`, maintainers only) from IXI training subjects:
the T1 head template and its label atlas from ../shared/data/ixi_t1, the T2 head template from
the IXI T2 cohort folder (training.ixi_t2_cohort) with `--modality T2`.

Kept apart from `templates` (which only loads it at run time) because building runs the
preprocessing pipeline, which itself needs the loaded template.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .intensity import INTENSITY_RANGE
from .templates import (
    ATLAS_FILE,
    ATLAS_TABLE_FILE,
    SHIPPED_TEMPLATE,
    TEMPLATE_KINDS,
    ModelGrid,
    Template,
    load_template,
    nilearn_mni_path,
)


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


class LabelVote:
    """Majority vote of label maps on one grid: per voxel, the label most maps give it
    (background 0 included, so the atlas's brain ends where half the heads' brains end; a tie
    goes to the smaller label)."""

    def __init__(self, shape: tuple, maps: int, labels: int = 256):
        self.counts = np.zeros((labels, int(np.prod(shape))), np.uint8 if maps < 256 else np.uint16)
        self.shape = shape
        self.voxels = np.arange(self.counts.shape[1])

    def add(self, labels: np.ndarray) -> None:
        self.counts[labels.ravel().astype(np.intp), self.voxels] += 1

    def result(self) -> np.ndarray:
        return np.argmax(self.counts, axis=0).astype(np.uint16).reshape(self.shape)


def build_template(pairs: list[tuple[Path, Path]], out_dir: Path, dlmuse_dir: Path | None,
                   grid: ModelGrid | None = None, progress=None, name: str = SHIPPED_TEMPLATE,
                   rebuild: str = "") -> Template:
    """Average the whole heads and brain masks of (image, parcellation or brain mask) pairs in MNI
    space into the template `name` (TEMPLATE_KINDS), and with `dlmuse_dir` fuse their DLMUSE
    labels into the label atlas.

    Each brain (mask > 0) is registered to the MNI152 brain, brain to brain (mutual information,
    so a T2 brain registers as a T1 one does); the head and the mask are then resampled on the
    model grid with that transform (linearly), the labels with the same transform (nearest
    neighbour) and fused by majority vote (LabelVote). The atlas's table names its labels from
    DLMUSE's lists in `dlmuse_dir` (rois.csv, derived.csv). The template's own table records its
    files' sha256, its heads and `rebuild`, the command that made it.
    """
    from ..io import read_mask, read_volume, write_text, write_volume
    from .pipeline import preprocess, resample

    grid = grid or ModelGrid()
    mni = mni_brain_template(grid)
    reference = grid.reference()
    head_sum = np.zeros(reference.GetSize()[::-1], np.float64)
    mask_sum = np.zeros_like(head_sum)
    vote = LabelVote(head_sum.shape, len(pairs)) if dlmuse_dir else None
    for index, (image_path, parcellation_path) in enumerate(pairs):
        image = read_volume(image_path)
        mask = read_mask(parcellation_path, image)
        result = preprocess(image, mni, grid, brain_mask=mask)
        head = sitk.GetArrayFromImage(resample(image, reference, result.transform))
        low, high = result.intensity_range
        head_sum += np.clip((head - low) / (high - low), *INTENSITY_RANGE) / INTENSITY_RANGE[1]
        mask_sum += sitk.GetArrayViewFromImage(result.brain_mask_model)
        if vote is not None:
            labels = sitk.ReadImage(str(parcellation_path), sitk.sitkUInt8)
            vote.add(sitk.GetArrayViewFromImage(resample(labels, reference, result.transform,
                                                         sitk.sitkNearestNeighbor)))
        if progress:
            progress(index + 1, len(pairs))
    head = sitk.GetImageFromArray(np.round(255 * head_sum / len(pairs)).astype(np.uint8))
    probability = sitk.GetImageFromArray(np.round(255 * mask_sum / len(pairs)).astype(np.uint8))
    for image in (head, probability):
        image.CopyInformation(reference)
    kind = TEMPLATE_KINDS[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_volume(head, out_dir / kind.head_file), write_volume(probability, out_dir / kind.probability_file)]
    write_text(json.dumps({"template": name, "modality": kind.modality,
                           "sha256": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files},
                           "heads": [Path(image_path).name for image_path, _ in pairs], "rebuild": rebuild},
                          indent=1), out_dir / kind.table)
    if vote is not None:
        write_atlas(vote, reference, pairs, out_dir, dlmuse_dir)
    return load_template(out_dir, grid, name)


def write_atlas(vote: LabelVote, reference: sitk.Image, pairs: list, out_dir: Path, dlmuse_dir: Path) -> None:
    """The fused DLMUSE label atlas and its table (names, sha256, how it was made)."""
    from ..io import write_text, write_volume
    from ..outputs.anatomy import AnatomyNames

    atlas = sitk.GetImageFromArray(vote.result())
    atlas.CopyInformation(reference)
    write_volume(atlas, out_dir / ATLAS_FILE)
    names = AnatomyNames.from_dlmuse(dlmuse_dir / "rois.csv", dlmuse_dir / "derived.csv",
                                     np.unique(sitk.GetArrayViewFromImage(atlas)))
    table = {"atlas": ATLAS_FILE, "sha256": hashlib.sha256((out_dir / ATLAS_FILE).read_bytes()).hexdigest(),
             "template": SHIPPED_TEMPLATE,
             "method": "DLMUSE labels of the template's heads, carried onto the model grid through the "
                       "template's own registration (nearest neighbour), fused by majority vote",
             "subjects": [Path(image_path).name for image_path, _ in pairs],
             "rebuild": f"uadc template --data <ixi_t1> --count {len(pairs)}",
             "labels": names.to_json()}
    write_text(json.dumps(table, indent=1), out_dir / ATLAS_TABLE_FILE)
