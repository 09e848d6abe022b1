"""Choosing the threshold: a fraction of healthy brain voxels flagged (no labels needed),
or the best Dice on a labelled validation set (the paper's rule).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .components import ComponentThresholder
from .presets import PER_SCAN_FACTOR


def _brain_values(anomaly_map: np.ndarray, brain: np.ndarray) -> np.ndarray:
    anomaly_map, brain = np.asarray(anomaly_map), np.asarray(brain) > 0
    if anomaly_map.shape != brain.shape:
        raise ValueError(f"map {anomaly_map.shape} and brain {brain.shape} differ in shape")
    return anomaly_map[brain]


def _brain_sessions(maps_and_brains, spacing_xyz, connectivity) -> tuple[list[ComponentThresholder], int]:
    """One ComponentThresholder per subject, on its map with -inf outside the brain (never flagged)."""
    sessions, total = [], 0
    for anomaly_map, brain in maps_and_brains:
        inside = np.asarray(brain) > 0
        sessions.append(ComponentThresholder(np.where(inside, anomaly_map, -np.inf), spacing_xyz, connectivity))
        total += int(np.count_nonzero(inside))
    return sessions, total


def _flagged_voxels(sessions: list[ComponentThresholder], threshold: float, min_size_mm3: float) -> int:
    return sum(int(np.count_nonzero(session(threshold, min_size_mm3)[0])) for session in sessions)


def flagged_fraction(maps_and_brains: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float,
                     min_size_mm3: float = 0.0, spacing_xyz=2.0, connectivity: int = 26) -> float:
    """Fraction of all brain voxels (pooled over subjects) that threshold_components flags."""
    sessions, total = _brain_sessions(maps_and_brains, spacing_xyz, connectivity)
    return _flagged_voxels(sessions, threshold, min_size_mm3) / total if total else float("nan")


def healthy_fpr_thresholds(maps_and_brains: Sequence[tuple[np.ndarray, np.ndarray]],
                           fprs: Sequence[float] = (0.01, 0.005, 0.001), min_size_mm3: float = 0.0,
                           spacing=2.0, connectivity: int = 26,
                           per_scan_factor: float | None = PER_SCAN_FACTOR) -> dict[float, float]:
    """{fpr: threshold}: the lowest threshold at which at most `fpr` of the healthy brain voxels
    (pooled over the given subjects) are flagged after dropping components < min_size_mm3, and,
    with `per_scan_factor`, at most per_scan_factor x fpr of any one subject's brain (the
    pooled share alone lets a few unusual healthy brains carry most of the flagged voxels).

    Without a size filter this is the (1 - fpr) quantile of the pooled brain values. With one,
    the flagged fraction still falls monotonically as the threshold rises (a component at a
    higher threshold lies inside one at a lower threshold), so a bisection over the sorted
    brain values below that quantile finds it.
    """
    pairs = list(maps_and_brains)
    if not pairs:
        raise ValueError("no healthy maps given")
    values = np.sort(np.concatenate([_brain_values(m, b) for m, b in pairs]))
    if values.size == 0:
        raise ValueError("the healthy brain masks are empty")
    n = values.size
    # Without a size filter, threshold values[k] flags every value above it.
    raw_above = n - np.searchsorted(values, values, side="right")
    sessions = _brain_sessions(pairs, spacing, connectivity)[0] if min_size_mm3 > 0 else []
    thresholds: dict[float, float] = {}
    for fpr in fprs:
        if not 0 < fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        # Smallest index whose threshold flags <= fpr of the voxels (the last index flags none).
        high = int(np.argmax(raw_above <= fpr * n))
        if min_size_mm3 > 0:
            # Size filtering only removes voxels, so the answer lies at or below `high`.
            low = -1  # a virtual index that flags too much
            while high - low > 1:
                middle = (low + high) // 2
                if _flagged_voxels(sessions, float(values[middle]), min_size_mm3) <= fpr * n:
                    high = middle
                else:
                    low = middle
        thresholds[float(fpr)] = float(values[high])
    own_shares = {fpr: per_scan_factor * fpr for fpr in thresholds if per_scan_factor and per_scan_factor * fpr < 1}
    if own_shares and len(pairs) > 1:
        # every preset of one scan in one call: its values are sorted and its components labelled once
        for pair in pairs:
            own = healthy_fpr_thresholds([pair], tuple(own_shares.values()), min_size_mm3, spacing, connectivity,
                                         per_scan_factor=None)
            for fpr, share in own_shares.items():
                thresholds[fpr] = max(thresholds[fpr], own[share])
    return thresholds


def dice_optimal_threshold(maps: Sequence[np.ndarray], lesion_masks: Sequence[np.ndarray],
                           brains: Sequence[np.ndarray], candidates: Sequence[float] | int = 200,
                           pooled: bool = True) -> tuple[float, float]:
    """(threshold, dice) maximising voxel-wise Dice of (map > threshold) on labelled validation cases.

    Only brain voxels count. pooled=True (the paper's rule) computes one Dice over all cases'
    voxels together; pooled=False maximises the mean of the per-case Dice scores.
    candidates: explicit thresholds, or a number of thresholds evenly spaced between the lowest
    and highest pooled brain value.
    """
    if not (len(maps) == len(lesion_masks) == len(brains)) or not maps:
        raise ValueError("maps, lesion_masks and brains must be non-empty and of equal length")
    per_case = []
    for anomaly_map, lesion, brain in zip(maps, lesion_masks, brains):
        inside = np.asarray(brain) > 0
        values = _brain_values(anomaly_map, inside)
        labels = np.asarray(lesion)[inside] > 0
        per_case.append((np.sort(values), np.sort(values[labels])))
    if np.ndim(candidates) == 0:
        pooled_values = np.concatenate([v for v, _ in per_case])
        # Evenly spaced values, not quantiles: lesions are often < 1 % of the brain, and the
        # quantiles would then leave the whole lesion range between two candidates.
        candidates = np.linspace(pooled_values.min(), pooled_values.max(), max(int(candidates), 2))
    candidates = np.asarray(candidates, dtype=float)

    def counts(sorted_values: np.ndarray) -> np.ndarray:
        # number of values > each candidate
        return sorted_values.size - np.searchsorted(sorted_values, candidates, side="right")

    predicted = np.array([counts(v) for v, _ in per_case], dtype=float)
    hits = np.array([counts(p) for _, p in per_case], dtype=float)
    lesion_sizes = np.array([p.size for _, p in per_case], dtype=float)[:, None]
    if pooled:
        denominator = predicted.sum(0) + lesion_sizes.sum()
        scores = np.where(denominator > 0, 2 * hits.sum(0) / np.maximum(denominator, 1), 1.0)
    else:
        denominator = predicted + lesion_sizes
        scores = np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 1.0).mean(0)
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])
