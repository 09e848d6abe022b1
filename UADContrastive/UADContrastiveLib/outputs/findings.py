"""Findings: every connected region of a thresholded anomaly map, named by anatomy.

`describe_regions` is called by `uadc detect` (report.json "findings", the printed table, the
overview's numbers) and by the Slicer module on every slider move, so it works on the region's
bounding boxes only and needs numpy, scipy and SimpleITK, no torch.

Left and right come from the label atlas carried onto the input grid (DLMUSE's _R/_L labels)
and from physical coordinates, never from array axes, so the same head stored in any
orientation gives the same answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .anatomy import AnatomyNames

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
STRUCTURES_LISTED = 3
MIN_STRUCTURE_SHARE = 0.05   # overlaps smaller than this are not listed
NAMED_BY_STRUCTURE = 0.5     # a region mostly in one structure is named after it, else after its lobe
CROSSING_SHARE = 0.2         # a region with at least this share on each side crosses the midline
NEAREST_TISSUE_MM = 6.0      # voxels on CSF or unlabelled take the lobe and side of tissue this near
EDGE_MM = 5.0                # "along the brain edge": within this distance of it ...
EDGE_SHARE = 0.5             # ... for at least this share of the region's voxels
MIDLINE_MM = 5.0             # without an atlas: |template x| below this is the midline
LOBE_WORDS = {"frontal": "frontal lobe", "parietal": "parietal lobe", "temporal": "temporal lobe",
              "occipital": "occipital lobe", "limbic": "limbic lobe"}


def affine_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of an affine ITK transform (any kind: affine, similarity, Euler), read off the
    images of the origin and the unit vectors."""
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.eye(4)
    for axis in range(3):
        matrix[:3, axis] = np.asarray(transform.TransformPoint(tuple(np.eye(3)[axis]))) - origin
    matrix[:3, 3] = origin
    return matrix


def input_to_template_ras(model_to_input: sitk.Transform) -> list[list[float]]:
    """The 4x4 RAS -> RAS affine from the input scanner's coordinates to the template's (MNI),
    from preprocessing's transform (template LPS point -> input LPS point, ITK convention)."""
    inverse = np.linalg.inv(affine_matrix(model_to_input))
    return (LPS_TO_RAS @ inverse @ LPS_TO_RAS).tolist()


def index_to_ras(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index (x, y, z) to scanner RAS mm."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


@dataclass
class RegionLabels:
    """The regions numbered 1..count (largest first) inside the box that holds them all."""

    box: tuple[slice, slice, slice] | None
    ids: np.ndarray | None   # uint16/uint32 on the box
    count: int

    def full(self, shape: tuple) -> np.ndarray:
        """The region ids on the whole grid (0 elsewhere)."""
        full = np.zeros(shape, np.uint16 if self.count < 65536 else np.uint32)
        if self.box is not None:
            full[self.box] = self.ids
        return full


def label_regions(mask: np.ndarray) -> RegionLabels:
    """26-connected regions of mask > 0, numbered by size, largest first."""
    flagged = np.asarray(mask) > 0
    z_any = np.flatnonzero(flagged.any(axis=(1, 2)))
    if z_any.size == 0:
        return RegionLabels(None, None, 0)
    yx = flagged.any(axis=0)
    y_any, x_any = np.flatnonzero(yx.any(axis=1)), np.flatnonzero(yx.any(axis=0))
    box = (slice(z_any[0], z_any[-1] + 1), slice(y_any[0], y_any[-1] + 1), slice(x_any[0], x_any[-1] + 1))
    labeller = sitk.ConnectedComponentImageFilter()
    labeller.SetFullyConnected(True)
    labelled = labeller.Execute(sitk.GetImageFromArray(flagged[box].view(np.uint8)))
    count = labeller.GetObjectCount()
    ordered = sitk.RelabelComponent(labelled, sortByObjectSize=True)
    ids = sitk.GetArrayFromImage(ordered).astype(np.uint16 if count < 65536 else np.uint32)
    return RegionLabels(box, ids, count)


def describe_regions(anomaly_map: np.ndarray, mask: np.ndarray, anatomy: np.ndarray | None, image: sitk.Image,
                     input_to_template: list[list[float]] | None, names: AnatomyNames | None = None) -> list[dict]:
    """One dict per connected region of mask > 0 (26-connectivity), largest first: id, volume,
    scores, centroids (scanner RAS and template RAS mm), hemisphere, lobe, a short location,
    the DLMUSE structures it overlaps and whether it lies along the brain edge.

    Arrays are (z, y, x) on the grid of `image`; anatomy holds the atlas's labels carried onto
    that grid (None: no anatomy, then only the side is given, from the template coordinates);
    names defaults to the shipped atlas's table."""
    return find_regions(anomaly_map, mask, anatomy, image, input_to_template, names)[0]


def find_regions(anomaly_map, mask, anatomy, image, input_to_template, names=None) -> tuple[list[dict], RegionLabels]:
    """describe_regions and the region ids it numbered (for drawing them)."""
    anomaly_map, mask = np.asarray(anomaly_map), np.asarray(mask)
    shape = tuple(image.GetSize())[::-1]
    for what, array in (("anomaly map", anomaly_map), ("mask", mask), ("anatomy", anatomy)):
        if array is not None and np.shape(array) != shape:
            raise ValueError(f"the {what} is {np.shape(array)} (z, y, x), the image's grid {shape}")
    if anatomy is not None and names is None:
        names = shipped_names()
    regions = label_regions(mask)
    if regions.count == 0:
        return [], regions
    spacing_zyx = np.asarray(image.GetSpacing(), float)[::-1]
    to_ras = index_to_ras(image)
    to_template = None if input_to_template is None else np.asarray(input_to_template, float)
    # the brain whose edge matters: the atlas's (the template brain carried back, as a whole
    # head's brain mask is); without one, the map's support (0 outside the brain)
    brain = anatomy > 0 if anatomy is not None else anomaly_map != 0
    findings = []
    for number, region_box in enumerate(ndimage.find_objects(regions.ids), start=1):
        inside = regions.ids[region_box] == number
        box = tuple(slice(r.start + b.start, r.stop + b.start) for r, b in zip(region_box, regions.box))
        finding = _measure(number, box, inside, anomaly_map, spacing_zyx, to_ras, to_template)
        if anatomy is not None:
            finding.update(_anatomy(box, inside, anatomy, names, spacing_zyx))
        else:
            side = _side_from_template(finding["centroid_template_mm"])
            finding.update(hemisphere=side, lobe=None, structures=[],
                           location=f"{side} hemisphere" if side in ("right", "left") else side or "unknown location")
        finding["at_brain_edge"] = _at_edge(box, inside, brain, spacing_zyx)
        findings.append(_ordered(finding))
    return findings, regions


def _measure(number, box, inside, anomaly_map, spacing_zyx, to_ras, to_template) -> dict:
    scores = anomaly_map[box][inside]
    zyx = np.argwhere(inside).mean(axis=0) + [s.start for s in box]
    ras = (to_ras @ np.append(zyx[::-1], 1.0))[:3]
    template = None if to_template is None else (to_template @ np.append(ras, 1.0))[:3]
    voxels = int(inside.sum())
    return {"id": number, "volume_ml": round(voxels * float(np.prod(spacing_zyx)) / 1000.0, 3), "voxels": voxels,
            "peak_score": round(float(scores.max()), 3), "mean_score": round(float(scores.mean()), 3),
            "centroid_ras_mm": [round(float(v), 1) for v in ras],
            "centroid_template_mm": None if template is None else [round(float(v), 1) for v in template]}


def _padded(box, margin_zyx, shape):
    return tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin_zyx, shape))


def _anatomy(box, inside, anatomy, names: AnatomyNames, spacing_zyx) -> dict:
    labels = anatomy[box][inside]
    values, counts = np.unique(labels, return_counts=True)
    overlaps = sorted(((int(c), int(v)) for v, c in zip(values, counts) if v > 0), reverse=True)
    structures = [{"name": names[label].name, "share": round(count / labels.size, 2)}
                  for count, label in overlaps[:STRUCTURES_LISTED] if count / labels.size >= MIN_STRUCTURE_SHARE]
    tissue = _tissue_labels(box, inside, anatomy, names, spacing_zyx)
    if tissue.size == 0:
        return {"hemisphere": None, "lobe": None, "structures": structures, "location": "outside the labelled brain"}
    values, counts = np.unique(tissue, return_counts=True)
    sides = {"right": 0, "left": 0, "midline": 0}
    lobes: dict[str | None, int] = {}
    for value, count in zip(values, counts):
        structure = names[value]
        sides[structure.hemisphere] += int(count)
        lobes[structure.lobe] = lobes.get(structure.lobe, 0) + int(count)
    lateral = sides["right"] + sides["left"]
    crossing = lateral > 0 and min(sides["right"], sides["left"]) >= CROSSING_SHARE * lateral
    hemisphere = "midline" if crossing else max(sides, key=lambda side: (sides[side], side != "midline"))
    lobe = max(lobes, key=lambda name: (lobes[name], name is not None))
    top = names[values[np.argmax(counts)]]
    if counts.max() >= NAMED_BY_STRUCTURE * tissue.size and not (crossing and top.hemisphere != "midline"):
        location = top.readable
    elif lobe is None:
        location = "midline" if hemisphere == "midline" else f"{hemisphere} hemisphere"
    else:
        words = LOBE_WORDS.get(lobe, lobe)
        location = (f"{words}, both sides" if crossing else words if hemisphere == "midline"
                    else f"{hemisphere} {words}")
    return {"hemisphere": hemisphere, "lobe": lobe, "structures": structures, "location": location}


def _tissue_labels(box, inside, anatomy, names: AnatomyNames, spacing_zyx) -> np.ndarray:
    """The tissue label of every region voxel: its own, or for a voxel on CSF or no label that
    of the nearest tissue voxel within NEAREST_TISSUE_MM (voxels with none are left out)."""
    labels = anatomy[box][inside]
    tissue_values = np.array([names[v].tissue for v in np.unique(labels)])
    if tissue_values.all():
        return labels
    margin = np.ceil(NEAREST_TISSUE_MM / spacing_zyx).astype(int)
    around = _padded(box, margin, anatomy.shape)
    local = anatomy[around]
    values = np.unique(local)
    is_tissue = np.isin(local, values[[names[v].tissue for v in values]])
    if not is_tissue.any():
        return labels[:0]
    distance, nearest = ndimage.distance_transform_edt(~is_tissue, sampling=spacing_zyx, return_indices=True)
    offset = [b.start - a.start for b, a in zip(box, around)]
    region = tuple(np.argwhere(inside).T + np.asarray(offset)[:, None])
    close = distance[region] <= NEAREST_TISSUE_MM
    return local[tuple(index[region][close] for index in nearest)]


def _at_edge(box, inside, brain: np.ndarray, spacing_zyx) -> bool:
    margin = np.ceil(EDGE_MM / spacing_zyx).astype(int) + 1
    around = _padded(box, margin, brain.shape)
    # outside the grid is outside the brain: pad the box where it meets the grid's border
    pad = [(m - (b.start - a.start), m - (a.stop - b.stop)) for m, a, b in zip(margin, around, box)]
    local = np.pad(brain[around], pad, constant_values=False)
    distance = ndimage.distance_transform_edt(local, sampling=spacing_zyx)
    region = tuple(np.argwhere(inside).T + margin[:, None])
    return bool(np.mean(distance[region] <= EDGE_MM) >= EDGE_SHARE)


def _side_from_template(centroid) -> str | None:
    if centroid is None:
        return None
    return "midline" if abs(centroid[0]) < MIDLINE_MM else "right" if centroid[0] > 0 else "left"


FIELDS = ("id", "volume_ml", "voxels", "peak_score", "mean_score", "centroid_ras_mm", "centroid_template_mm",
          "hemisphere", "lobe", "location", "structures", "at_brain_edge")


def _ordered(finding: dict) -> dict:
    return {key: finding[key] for key in FIELDS}


_SHIPPED_NAMES: list = []


def shipped_names() -> AnatomyNames:
    """The shipped atlas's name table (read once)."""
    if not _SHIPPED_NAMES:
        from ..preprocess.templates import ATLAS_TABLE_FILE
        from ..resources import TEMPLATES

        _SHIPPED_NAMES.append(AnatomyNames.read(TEMPLATES / ATLAS_TABLE_FILE))
    return _SHIPPED_NAMES[0]


def findings_table(findings: list[dict], rows: int = 10) -> str:
    """The largest `rows` findings as lines of text, e.g. `#1  right frontal white matter  3.9 mL  peak 7.2`."""
    if not findings:
        return "no anomalous region"
    width = max(len(f["location"]) for f in findings[:rows])
    lines = []
    for finding in findings[:rows]:
        edge = "  (along the brain edge)" if finding["at_brain_edge"] else ""
        lines.append(f"#{finding['id']:<3} {finding['location']:<{width}}  {finding['volume_ml']:6.2f} mL  "
                     f"peak {finding['peak_score']:.1f}{edge}")
    if len(findings) > rows:
        lines.append(f"... and {len(findings) - rows} smaller region(s), all listed in report.json")
    return "\n".join(lines)
