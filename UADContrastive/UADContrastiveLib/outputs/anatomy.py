"""The names of the DLMUSE labels of the template's label atlas: each label's DLMUSE name, lobe,
hemisphere and a readable name ("right frontal white matter").

The shipped atlas (Resources/Templates, built by `uadc template`) carries a small JSON table:
for every label it holds, the DLMUSE name (dlmuse/rois.csv) and the lobe-level composite regions
it belongs to (dlmuse/derived.csv, 502-525). Detection reads only that table, never the data
folder. What the table says is DLMUSE's; how it is read (lobe, side, wording) is decided here,
so that a change of wording needs no rebuild. Standard library only.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

LOBES = ("frontal", "parietal", "temporal", "occipital", "limbic", "insula", "deep grey matter",
         "ventricles", "cerebellum", "brainstem")
# DLMUSE's lobe-level composites (derived.csv 502-525, without their _L/_R) -> our lobe.
COMPOSITE_LOBES = {"Frontal": "frontal", "Parietal": "parietal", "Temporal": "temporal", "Occipital": "occipital",
                   "Limbic": "limbic", "Deep_WM_GM": "deep grey matter", "Ventricles": "ventricles",
                   "Ventricle": "ventricles", "Cerebellum": "cerebellum"}
COMPOSITES = range(502, 526)
# Where a reader expects another lobe than DLMUSE's composites give (DLMUSE counts the insula as
# frontal, hippocampus and amygdala as deep structures) or where no composite holds the label.
LOBE_BY_NAME = {"AnteriorInsula": "insula", "PosteriorInsula": "insula", "Hippocampus": "limbic",
                "Amygdala": "limbic", "BrainStem": "brainstem", "VentralDC": "deep grey matter"}
# Labels that are not brain tissue (nor are unnamed labels): they never decide a region's lobe or side.
NOT_TISSUE = {"CortCSF"}
SIDES = {"R": "right", "L": "left"}
# Readable names where splitting DLMUSE's CamelCase is not enough.
WORDING = {
    "CortCSF": "cortical CSF", "CorpCall": "corpus callosum", "BrainStem": "brainstem",
    "3rdVentricle": "third ventricle", "4thVentricle": "fourth ventricle", "ThalamusProper": "thalamus",
    "VentralDC": "ventral diencephalon", "InfLatVentricle": "inferior horn of the lateral ventricle",
    "AccumbensArea": "nucleus accumbens", "CerebellumExterior": "cerebellar cortex",
    "Cerebellum_WM": "cerebellar white matter", "Frontal_WM": "frontal white matter",
    "Parietal_WM": "parietal white matter", "Temporal_WM": "temporal white matter",
    "Occipital_WM": "occipital white matter", "CerebellarVermalLobules_1to5": "cerebellar vermis (lobules I-V)",
    "CerebellarVermalLobules_6to7": "cerebellar vermis (lobules VI-VII)",
    "CerebellarVermalLobules_8to10": "cerebellar vermis (lobules VIII-X)",
    "AnteriorLimbInternalCapsule": "internal capsule (anterior limb)",
    "PosteriorLimbInternalCapsule": "internal capsule (posterior limb)",
    "PostcentralGyrusMedialSegment": "postcentral gyrus (medial segment)",
    "PrecentralGyrusMedialSegment": "precentral gyrus (medial segment)",
    "SuperiorFrontalGyrusMedialSegment": "superior frontal gyrus (medial segment)",
    "OpercularPartInferiorFrontalGyrus": "inferior frontal gyrus (opercular part)",
    "OrbitalPartInferiorFrontalGyrus": "inferior frontal gyrus (orbital part)",
    "TriangularPartInferiorFrontalGyrus": "inferior frontal gyrus (triangular part)",
}


@dataclass(frozen=True)
class Structure:
    label: int
    name: str                # DLMUSE's name, e.g. Frontal_WM_R
    readable: str            # "right frontal white matter"
    lobe: str | None         # one of LOBES, None for CSF, corpus callosum and unnamed labels
    hemisphere: str | None   # "right", "left", "midline"; None when the label is not tissue
    tissue: bool             # False for CSF and unnamed labels


def split_side(name: str) -> tuple[str, str | None]:
    """("Frontal_WM", "right") for "Frontal_WM_R"; (name, None) without a side suffix."""
    stem, _, side = name.rpartition("_")
    return (stem, SIDES[side]) if stem and side in SIDES else (name, None)


def readable_name(name: str) -> str:
    stem, side = split_side(name)
    words = WORDING.get(stem) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem).replace("_", " ").lower()
    return f"{side} {words}" if side else words


def structure(label: int, name: str | None, composites: list[str]) -> Structure:
    if name is None:
        return Structure(label, f"label_{label}", f"unnamed DLMUSE label {label}", None, None, False)
    stem, side = split_side(name)
    if stem in NOT_TISSUE:
        return Structure(label, name, readable_name(name), None, None, False)
    lobe = LOBE_BY_NAME.get(stem)
    for composite in composites:
        composite_stem, composite_side = split_side(composite)
        lobe = lobe or COMPOSITE_LOBES.get(composite_stem)
        side = side or composite_side
    return Structure(label, name, readable_name(name), lobe, side or "midline", True)


class AnatomyNames:
    """label -> Structure for the labels of one atlas; unknown labels read as unnamed."""

    def __init__(self, table: dict[int, tuple[str | None, list[str]]]):
        self.table = {int(label): (name, list(composites)) for label, (name, composites) in table.items()}
        self._structures = {label: structure(label, *entry) for label, entry in self.table.items()}

    def __getitem__(self, label: int) -> Structure:
        label = int(label)
        return self._structures.get(label) or structure(label, None, [])

    def labels(self, lobe: str, hemisphere: str | None = None) -> list[int]:
        """The labels of one lobe (and side), e.g. for measuring the atlas per lobe."""
        return sorted(s.label for s in self._structures.values()
                      if s.lobe == lobe and (hemisphere is None or s.hemisphere == hemisphere))

    @classmethod
    def from_dlmuse(cls, rois_csv: Path, derived_csv: Path, labels) -> AnatomyNames:
        """The table for `labels`, from DLMUSE's own lists (the data folder's dlmuse/*.csv)."""
        with open(rois_csv, newline="") as handle:
            names = {int(row["Index"]): row["Name"] for row in csv.DictReader(handle)}
        members: dict[int, list[str]] = {}
        with open(derived_csv, newline="") as handle:
            for row in csv.reader(handle):
                if row and row[0].strip().isdigit() and int(row[0]) in COMPOSITES:
                    for value in row[2:]:
                        if value.strip():
                            members.setdefault(int(value), []).append(row[1])
        return cls({int(label): (names.get(int(label)), members.get(int(label), []))
                    for label in labels if int(label) > 0})

    def to_json(self) -> dict:
        return {str(label): {"name": name, "composites": composites}
                for label, (name, composites) in sorted(self.table.items())}

    @classmethod
    def from_json(cls, data: dict) -> AnatomyNames:
        return cls({int(label): (entry["name"], entry["composites"]) for label, entry in data.items()})

    @classmethod
    def read(cls, path: Path) -> AnatomyNames:
        return cls.from_json(json.loads(Path(path).read_text())["labels"])
