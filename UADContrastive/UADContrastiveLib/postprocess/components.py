"""Anomaly map -> mask: voxels above a threshold grouped into connected components, small
components dropped. The Slicer module's sliders call this on every move, so it is fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

CONNECTIVITIES = (6, 26)  # face neighbours only, or faces + edges + corners


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Slices of the smallest box holding every True voxel (two cheap reductions over the volume)."""
    z_any = mask.reshape(mask.shape[0], -1).any(axis=1)
    if not z_any.any():
        return None
    yx_any = mask.any(axis=0)
    z, y, x = np.flatnonzero(z_any), np.flatnonzero(yx_any.any(axis=1)), np.flatnonzero(yx_any.any(axis=0))
    return slice(z[0], z[-1] + 1), slice(y[0], y[-1] + 1), slice(x[0], x[-1] + 1)


def voxel_volume_mm3(spacing_xyz) -> float:
    return float(np.prod(np.broadcast_to(np.asarray(spacing_xyz, dtype=float), (3,))))


@dataclass
class _Labelled:
    """Connected components of the voxels above one threshold, inside a box of the volume."""

    box: tuple[slice, slice, slice]  # where the voxels above threshold lie
    box_shape: tuple[int, int, int]
    foreground: np.ndarray  # flat indices (in the box) of the voxels above threshold
    ids: np.ndarray         # their component labels
    sizes: np.ndarray       # voxels per label; index 0 is background


def _label(above: np.ndarray, connectivity: int,
           offset: tuple[int, int, int] = (0, 0, 0)) -> _Labelled | None:
    """Label `above` (a region starting at `offset` in the volume) inside its own bounding box,
    so that the labelling, the costly step, sees as few voxels as possible."""
    box = _bounding_box(above)
    if box is None:
        return None
    crop = np.ascontiguousarray(above[box]).view(np.uint8)
    # SimpleITK's run-length labelling, single-threaded: on boxes of a few million voxels it
    # measured 1.5-3x faster than scipy.ndimage.label unless over ~30 % of the box is foreground
    # (then on par), and a second thread only added overhead on the 2-core target machine.
    labeller = sitk.ConnectedComponentImageFilter()
    labeller.SetFullyConnected(connectivity == 26)
    labeller.SetNumberOfThreads(1)
    labels_image = labeller.Execute(sitk.GetImageFromArray(crop))
    foreground = np.flatnonzero(crop)
    # A view, read while labels_image is alive; the fancy index copies what we keep.
    ids = sitk.GetArrayViewFromImage(labels_image).ravel()[foreground].astype(np.intp)
    count = labeller.GetObjectCount()
    box = tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, offset))
    return _Labelled(box, crop.shape, foreground, ids, np.bincount(ids, minlength=count + 1))


@dataclass
class CroppedMask:
    """A mask given as the box (z, y, x slices) that holds every flagged voxel and the mask on
    that box (box None: nothing flagged)."""

    box: tuple[slice, slice, slice] | None
    box_mask: np.ndarray | None  # uint8 0/1

    def full(self, shape: tuple) -> np.ndarray:
        mask = np.zeros(shape, dtype=np.uint8)
        if self.box is not None:
            mask[self.box] = self.box_mask
        return mask


@dataclass
class _Kept:
    """The components of at least the minimum size."""

    mask: CroppedMask
    labels: np.ndarray      # their labels
    foreground: np.ndarray  # flat indices (in the box) of their voxels
    ids: np.ndarray         # those voxels' labels


def _kept(labelled: _Labelled | None, min_size_mm3: float, voxel_mm3: float) -> _Kept:
    if labelled is None:
        empty = np.zeros(0, dtype=np.intp)
        return _Kept(CroppedMask(None, None), empty, empty, empty)
    # A relative tolerance so that a component of exactly min_size_mm3 is kept despite rounding.
    keep = labelled.sizes * voxel_mm3 >= min_size_mm3 * (1.0 - 1e-9)
    keep[0] = False
    kept_voxels = keep[labelled.ids]
    foreground, ids = labelled.foreground[kept_voxels], labelled.ids[kept_voxels]
    box_mask = np.zeros(labelled.box_shape, dtype=np.uint8)
    box_mask.ravel()[foreground] = 1
    return _Kept(CroppedMask(labelled.box, box_mask), np.flatnonzero(keep), foreground, ids)


def _select(labelled: _Labelled | None, min_size_mm3: float, voxel_mm3: float,
            shape: tuple) -> tuple[np.ndarray, list[dict]]:
    """Mask and component list of the components of at least min_size_mm3."""
    kept = _kept(labelled, min_size_mm3, voxel_mm3)
    mask, kept_labels, foreground, ids = kept.mask.full(shape), kept.labels, kept.foreground, kept.ids
    if kept_labels.size == 0:
        return mask, []
    sizes = labelled.sizes
    # Centroids: per-component sums of the voxel coordinates (one bincount per axis) / sizes.
    coordinates = np.unravel_index(foreground, labelled.box_shape)
    centroids_zyx = [np.bincount(ids, weights=c, minlength=sizes.size)[kept_labels] / sizes[kept_labels]
                     + s.start for c, s in zip(coordinates, labelled.box)]
    order = np.argsort(-sizes[kept_labels], kind="stable")
    components = []
    for rank, index in enumerate(order, start=1):
        voxels = int(sizes[kept_labels[index]])
        components.append({
            "label": rank,
            "voxels": voxels,
            "volume_ml": voxels * voxel_mm3 / 1000.0,
            "centroid_ijk": tuple(float(centroids_zyx[axis][index]) for axis in (2, 1, 0)),
        })
    return mask, components


def _check_map(anomaly_map: np.ndarray, connectivity: int) -> np.ndarray:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {tuple(CONNECTIVITIES)}, not {connectivity}")
    anomaly_map = np.asarray(anomaly_map)
    if anomaly_map.ndim != 3:
        raise ValueError(f"anomaly_map must be 3D, got shape {anomaly_map.shape}")
    return anomaly_map


def threshold_components(anomaly_map: np.ndarray, threshold: float, min_size_mm3: float = 0.0,
                         spacing_xyz: Sequence[float] | float = (1.0, 1.0, 1.0),
                         connectivity: int = 26) -> tuple[np.ndarray, list[dict]]:
    """Voxels with anomaly_map > threshold, grouped into connected components; components with a
    volume < min_size_mm3 are dropped.

    anomaly_map: 3D (z, y, x) array; spacing_xyz: voxel size in mm as SimpleITK orders it
    (x, y, z), or a scalar. connectivity: 26 (default: voxels touching by a face, edge or corner
    belong together, the usual rule for counting lesions) or 6 (faces only; faster, and stricter
    with speckle).
    Returns (mask uint8 0/1 of the kept components, components), the components sorted by
    decreasing size and numbered from 1: {"label", "voxels", "volume_ml", "centroid_ijk"}, the
    centroid in SimpleITK index order (i, j, k) = (x, y, z), ready for
    TransformContinuousIndexToPhysicalPoint.

    Speed: labelling runs only in the bounding box of the voxels above threshold, and sizes
    and centroids come from np.bincount over foreground voxels, never from a loop over voxels.
    For repeated calls on one map (sliders) use ComponentThresholder, which also caches.
    """
    anomaly_map = _check_map(anomaly_map, connectivity)
    labelled = _label(anomaly_map > threshold, connectivity)
    return _select(labelled, min_size_mm3, voxel_volume_mm3(spacing_xyz), anomaly_map.shape)


class ComponentThresholder:
    """threshold_components for one map called again and again (the Slicer module's sliders).

    Set-up crops the map once to the box where it exceeds its minimum (the brain: the map is
    0 outside it), so each update compares and labels only that box; moving only the
    minimum-size slider reuses the last labelling and skips the labelling altogether.
    """

    def __init__(self, anomaly_map: np.ndarray, spacing_xyz: Sequence[float] | float = (1.0, 1.0, 1.0),
                 connectivity: int = 26):
        anomaly_map = _check_map(anomaly_map, connectivity)
        self.shape = anomaly_map.shape
        self.connectivity = connectivity
        self.spacing_xyz = spacing_xyz
        self.voxel_mm3 = voxel_volume_mm3(spacing_xyz)
        self.floor = float(anomaly_map.min())
        full = tuple(slice(0, n) for n in self.shape)
        self._box = _bounding_box(anomaly_map > self.floor) or full
        self._crop = np.ascontiguousarray(anomaly_map[self._box])
        self._full_map = anomaly_map  # for thresholds below the floor, when every voxel is above
        self._last: tuple[float, _Labelled | None] | None = None

    def __call__(self, threshold: float, min_size_mm3: float = 0.0) -> tuple[np.ndarray, list[dict]]:
        if threshold < self.floor:  # every voxel is above: the crop does not hold them all
            return threshold_components(self._full_map, threshold, min_size_mm3, self.spacing_xyz,
                                        self.connectivity)
        return _select(self._labelled(threshold), min_size_mm3, self.voxel_mm3, self.shape)

    def cropped_mask_and_totals(self, threshold: float,
                                min_size_mm3: float = 0.0) -> tuple[CroppedMask, int, float]:
        """What a slider move shows: (the mask, cropped to the box that holds it; the number of
        components; their volume in mL). Without the per-component list (at a low threshold on
        a noisy 256^3 map, 60 000 components, building it was most of a move's time) and
        without a full-size mask that the segment would only crop again."""
        if threshold < self.floor:
            mask, components = self(threshold, min_size_mm3)
            cropped = CroppedMask(tuple(slice(0, n) for n in self.shape), mask)
            count, voxels = len(components), int(np.count_nonzero(mask))
        else:
            kept = _kept(self._labelled(threshold), min_size_mm3, self.voxel_mm3)
            cropped, count, voxels = kept.mask, int(kept.labels.size), int(kept.foreground.size)
        return cropped, count, round(voxels * self.voxel_mm3 / 1000.0, 4)

    def _labelled(self, threshold: float) -> _Labelled | None:
        """The labelling at `threshold` inside the crop, cached for the next call."""
        if self._last is None or self._last[0] != threshold:
            offset = tuple(s.start for s in self._box)
            self._last = (threshold, _label(self._crop > threshold, self.connectivity, offset))
        return self._last[1]
