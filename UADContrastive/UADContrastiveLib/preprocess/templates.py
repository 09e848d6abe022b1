"""The template space and the model grid.

The model grid is a fixed box in MNI152 space (LPS, 2 mm, 96 x 96 axial x 80 slices),
so every subject gives slices of the same size and anatomy lines up across subjects.

The shipped template (Resources/Templates) is a population average built from the
IXI *training* subjects (see template_build): their brains (DLMUSE > 0) registered
affinely to the MNI152 2009a brain from the nilearn wheel, then their whole heads and
brain masks averaged on the model grid. A whole-head template lets us register
whole-head input like-with-like (a brain-only template stretched over a head gives
Dice ~0.5), and an IXI-built head matches the scanner population of the training data.
Beside it ships the DLMUSE label atlas of the same heads (`load_atlas`), which names findings.
A T2 head template of the same kind (TEMPLATE_KINDS) is built from the IXI T2 training heads;
both lie on the same MNI model grid, so the one label atlas names findings on either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..resources import TEMPLATES
from .registration import Pyramid

HEAD_FILE = "ixi_head_2mm.nii.gz"
BRAIN_PROBABILITY_FILE = "ixi_brain_probability_2mm.nii.gz"
SHIPPED_TEMPLATE = "ixi-head-2mm"
T2_TEMPLATE = "ixi-t2-head-2mm"
# The DLMUSE label atlas of the same heads (majority vote on the model grid) and its table:
# label names and lobes (outputs.anatomy), the atlas file's sha256 and how it was made.
ATLAS_FILE = "ixi_dlmuse_atlas_2mm.nii.gz"
ATLAS_TABLE_FILE = "ixi_dlmuse_atlas_2mm.json"


@dataclass(frozen=True)
class TemplateKind:
    """A template's name (the card's `template` field), the contrast of its heads and its files.
    `table` records the files' sha256, the heads and the rebuild command; a template whose table
    exists is checked against it on loading."""

    name: str
    modality: str
    head_file: str
    probability_file: str
    table: str


TEMPLATE_KINDS = {
    SHIPPED_TEMPLATE: TemplateKind(SHIPPED_TEMPLATE, "T1", HEAD_FILE, BRAIN_PROBABILITY_FILE, "ixi_head_2mm.json"),
    T2_TEMPLATE: TemplateKind(T2_TEMPLATE, "T2", "ixi_t2_head_2mm.nii.gz", "ixi_t2_brain_probability_2mm.nii.gz",
                              "ixi_t2_head_2mm.json"),
}


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
        return cls(tuple(int(v) for v in data["size_xyz"]), float(data["spacing_mm"]),
                   tuple(float(v) for v in data["center_lps_mm"]))

    def matches(self, other: ModelGrid, tolerance_mm: float = 1e-3) -> bool:
        """Same voxel count, spacing and position (up to float noise from reading files)."""
        return (tuple(self.size) == tuple(other.size) and abs(self.spacing - other.spacing) < tolerance_mm
                and np.allclose(self.center_lps, other.center_lps, atol=tolerance_mm))


@dataclass
class Template:
    head: sitk.Image               # whole head, 0..1, on the model grid
    brain_probability: sitk.Image  # 0..1, on the model grid
    grid: ModelGrid
    name: str = SHIPPED_TEMPLATE
    modality: str = "T1"  # the contrast of its heads: what the brain-resemblance check compares against
    # Derived images made on first use and kept for every later subject (a Detector keeps its
    # template for all its inputs): the skull-stripped brain and the registration pyramids.
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def cached(self, key: str, make):
        """make(), computed once per template: what is derived from it is the same for every subject."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    @property
    def brain(self) -> sitk.Image:
        """Skull-stripped template: the head inside brain probability > 0.5."""
        return self.cached("brain", lambda: sitk.Mask(self.head, sitk.Cast(self.brain_probability > 0.5,
                                                                             sitk.sitkUInt8)))

    def pyramid(self, which: str) -> Pyramid:
        """The registration pyramid of the "head" or the "brain"."""
        return self.cached(f"pyramid {which}", lambda: Pyramid(self.head if which == "head" else self.brain))

    def on_grid(self, grid: ModelGrid) -> Template:
        """This template resampled (linearly, in MNI space) onto another model grid, for a model
        trained on that grid; the template itself when the grid is already its own."""
        if grid.matches(self.grid):
            return self
        reference = grid.reference()
        identity = sitk.Transform(3, sitk.sitkIdentity)
        head, probability = (sitk.Resample(image, reference, identity, sitk.sitkLinear, 0.0)
                             for image in (self.head, self.brain_probability))
        return Template(head, probability, grid, self.name, self.modality)


def load_template(folder: Path = TEMPLATES, grid: ModelGrid | None = None, name: str = SHIPPED_TEMPLATE) -> Template:
    """The template `name` (TEMPLATE_KINDS) from `folder`, checked against its table's sha256
    where the table exists."""
    kind = TEMPLATE_KINDS[name]
    head_path, probability_path = folder / kind.head_file, folder / kind.probability_file
    if not head_path.exists():
        raise FileNotFoundError(f"template {head_path} is missing; rebuild it with `uadc template` "
                                "or reinstall the extension.")
    _check_table(folder / kind.table, (head_path, probability_path))
    head = sitk.Cast(sitk.ReadImage(str(head_path)), sitk.sitkFloat32) / 255.0
    probability = sitk.Cast(sitk.ReadImage(str(probability_path)), sitk.sitkFloat32) / 255.0
    grid = grid or ModelGrid(tuple(head.GetSize()), float(head.GetSpacing()[0]),
                             tuple(_center(head)))
    return Template(head, probability, grid, kind.name, kind.modality)


def _check_table(table_path: Path, files: tuple[Path, ...]) -> None:
    import hashlib
    import json

    if not table_path.exists():
        return
    recorded = json.loads(table_path.read_text())["sha256"]
    for path in files:
        if hashlib.sha256(path.read_bytes()).hexdigest() != recorded.get(path.name):
            raise ValueError(f"template file {path} does not match the checksum in {table_path.name}; "
                             f"rebuild it with `{json.loads(table_path.read_text()).get('rebuild', 'uadc template')}` "
                             "or reinstall the extension.")


def load_atlas(folder: Path = TEMPLATES):
    """(label atlas, AnatomyNames): the template's DLMUSE labels (uint16, in template space) and
    their names; the atlas is checked against the sha256 its table records."""
    import hashlib
    import json

    from ..outputs.anatomy import AnatomyNames

    atlas_path, table_path = folder / ATLAS_FILE, folder / ATLAS_TABLE_FILE
    for path in (atlas_path, table_path):
        if not path.exists():
            raise FileNotFoundError(f"label atlas {path} is missing; rebuild it with `uadc template` "
                                    "or reinstall the extension.")
    table = json.loads(table_path.read_text())
    digest = hashlib.sha256(atlas_path.read_bytes()).hexdigest()
    if digest != table["sha256"]:
        raise ValueError(f"label atlas {atlas_path} does not match the checksum in {table_path.name}; "
                         "rebuild it with `uadc template` or reinstall the extension.")
    return sitk.ReadImage(str(atlas_path), sitk.sitkUInt16), AnatomyNames.from_json(table["labels"])


def template_for_model(name: str, grid: ModelGrid, card_path=None) -> Template:
    """The template a model card names, on the card's model grid; ModelError for a template
    this version does not ship (running on another template would silently misplace the brain)."""
    from ..errors import ModelError

    if name not in TEMPLATE_KINDS:
        raise ModelError(card_path, f"field 'template' names {name!r}, but this version ships only "
                         f"{' and '.join(repr(k) for k in TEMPLATE_KINDS)}.",
                         "Use a model made for these templates, or update UADContrastive.")
    return load_template(name=name).on_grid(grid)


def template_for_modality(modality: str) -> str:
    """The name of the shipped template a new model of this contrast registers to: the T2 head
    template for T2 (whole T2 heads register to it with brain-mask Dice 0.90 against 0.70 to the
    T1 one, docs/t2.md), the T1 template for every other contrast."""
    return T2_TEMPLATE if str(modality).upper() == "T2" else SHIPPED_TEMPLATE


def _center(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetOrigin()) + (np.asarray(image.GetSize()) - 1) / 2.0 * np.asarray(image.GetSpacing())


def nilearn_mni_path(kind: str = "t1") -> Path:
    """The MNI152 2009a files inside the nilearn wheel (kind: t1, gm, wm)."""
    import nilearn

    return (Path(nilearn.__file__).parent / "datasets" / "data"
            / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")
