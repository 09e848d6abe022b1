"""Voxel-wise and lesion-wise metrics for anomaly maps, in numpy.

AUPRC and AUROC follow scikit-learn's definitions exactly (average_precision_score's
step-wise sum, roc_auc_score's trapezoid with tied scores as one threshold), so figures
are comparable with the literature without making scikit-learn a runtime dependency.
Labels: any value > 0 is positive (masks come as 0/1, 0/255 or bool).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_SIZE_BINS_ML = (0.1, 1.0, 10.0)


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel() > 0
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores, labels


def _counts_at_thresholds(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when flagging scores >= each distinct score, highest first.

    Tied scores form one threshold: all of them are flagged together, which is what makes
    ties count as half-correct in AUROC, as in scikit-learn.
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked_scores, ranked_labels = scores[order], labels[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(ranked_scores)), ranked_scores.size - 1]
    true_positives = np.cumsum(ranked_labels)[last_of_each_value]
    false_positives = last_of_each_value + 1 - true_positives
    return true_positives.astype(np.float64), false_positives.astype(np.float64)


def auprc(scores, labels) -> float:
    """Average precision, sum over thresholds of (R_n - R_{n-1}) * P_n (sklearn's
    average_precision_score, no interpolation); NaN when there is no positive."""
    scores, labels = _scores_and_labels(scores, labels)
    if scores.size == 0 or not labels.any():
        return float("nan")
    true_positives, false_positives = _counts_at_thresholds(scores, labels)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def auroc(scores, labels) -> float:
    """Area under the ROC curve (trapezoid over distinct thresholds, as sklearn's roc_auc_score);
    NaN when only one class is present."""
    scores, labels = _scores_and_labels(scores, labels)
    if not labels.any() or labels.all():
        return float("nan")
    true_positives, false_positives = _counts_at_thresholds(scores, labels)
    tpr = np.r_[0.0, true_positives / true_positives[-1]]
    fpr = np.r_[0.0, false_positives / false_positives[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def dice(a, b) -> float:
    """Dice overlap of two masks (> 0 is inside); 1.0 when both are empty (perfect agreement)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def best_dice(scores, labels, n_thresholds: int = 256) -> tuple[float, float]:
    """(best Dice, its threshold) of `scores > threshold` over n_thresholds evenly spaced
    between the lowest and highest score.

    One pass: each score is binned by the number of thresholds below it; reverse cumulative
    sums of the bin counts then give, for every threshold at once, how many voxels and how
    many lesion voxels are flagged.
    """
    scores, labels = _scores_and_labels(scores, labels)
    if scores.size == 0:
        return float("nan"), float("nan")
    thresholds = np.linspace(scores.min(), scores.max(), max(int(n_thresholds), 2))
    below = np.searchsorted(thresholds, scores, side="left")  # thresholds strictly below each score
    flagged_bins = np.bincount(below, minlength=thresholds.size + 1)
    hit_bins = np.bincount(below[labels], minlength=thresholds.size + 1)
    # Threshold k flags every score with more than k thresholds below it.
    flagged = np.cumsum(flagged_bins[::-1])[::-1][1:]
    hits = np.cumsum(hit_bins[::-1])[::-1][1:]
    denominator = flagged + np.count_nonzero(labels)
    scores_at = np.where(denominator > 0, 2.0 * hits / np.maximum(denominator, 1), 1.0)
    best = int(np.argmax(scores_at))
    return float(scores_at[best]), float(thresholds[best])


def size_bin_names(bins_ml: Sequence[float] = DEFAULT_SIZE_BINS_ML) -> list[str]:
    """Readable names of the size bins ("<0.1 mL", "0.1-1 mL", ..., ">10 mL")."""
    edges = [f"{b:g}" for b in bins_ml]
    names = [f"<{edges[0]} mL"] if edges else []
    names += [f"{low}-{high} mL" for low, high in zip(edges[:-1], edges[1:])]
    names += [f">={edges[-1]} mL"] if edges else ["all sizes"]
    return names


def lesion_detection_by_size(pred_mask, lesion_mask, spacing, bins_ml: Sequence[float] = DEFAULT_SIZE_BINS_ML,
                             connectivity: int = 26) -> dict[str, dict]:
    """Lesion-wise detection rate per lesion size.

    Lesions are the connected components (26- or 6-connectivity) of lesion_mask; a lesion is
    detected when any predicted voxel overlaps it. spacing: voxel size in mm (any axis order,
    only the volume matters) or a scalar. Bins are [edge_i, edge_i+1) mL.
    Returns {bin name: {"lesions", "detected", "rate"}} plus "all"; rate is NaN for an empty bin.
    """
    pred, lesion = np.asarray(pred_mask) > 0, np.asarray(lesion_mask) > 0
    if pred.shape != lesion.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {lesion.shape}")
    structure = ndimage.generate_binary_structure(lesion.ndim, lesion.ndim if connectivity == 26 else 1)
    labels, count = ndimage.label(lesion, structure=structure)
    voxel_ml = float(np.prod(np.broadcast_to(np.asarray(spacing, dtype=float), (lesion.ndim,)))) / 1000.0
    volumes_ml = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    detected = np.bincount(labels[pred], minlength=count + 1)[1:] > 0
    which_bin = np.digitize(volumes_ml, np.asarray(bins_ml, dtype=float), right=False)
    result = {}
    for index, name in enumerate([*size_bin_names(bins_ml), "all"]):
        in_bin = which_bin == index if name != "all" else np.ones(count, dtype=bool)
        lesions, found = int(in_bin.sum()), int((detected & in_bin).sum())
        result[name] = {"lesions": lesions, "detected": found, "rate": found / lesions if lesions else float("nan")}
    return result


def false_positive_fraction(pred_mask, brain, lesion=None) -> float:
    """Fraction of lesion-free brain voxels that are flagged (NaN if there are none)."""
    pred, healthy = np.asarray(pred_mask) > 0, np.asarray(brain) > 0
    if lesion is not None:
        healthy = healthy & ~(np.asarray(lesion) > 0)
    total = int(np.count_nonzero(healthy))
    return int(np.count_nonzero(pred & healthy)) / total if total else float("nan")
