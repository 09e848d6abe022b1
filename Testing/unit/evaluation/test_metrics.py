"""Metrics against scikit-learn (random data, with ties) and on constructed lesions."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from UADContrastiveLib.evaluation.metrics import (
    auprc,
    auroc,
    best_dice,
    dice,
    false_positive_fraction,
    lesion_detection_by_size,
    size_bin_names,
)


def random_case(seed: int, ties: bool, n: int = 3000, positive_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < positive_rate
    # Informative but imperfect scores; rounding creates many tied values (like quantised maps).
    scores = rng.normal(size=n) + 1.2 * labels
    if ties:
        scores = np.round(scores, 1)
    return scores, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_auprc_and_auroc_match_sklearn(seed, ties):
    scores, labels = random_case(seed, ties)
    assert auprc(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_heavy_ties_and_label_encodings():
    rng = np.random.default_rng(9)
    scores = rng.integers(0, 3, 500).astype(float)  # only three distinct values
    labels = rng.random(500) < 0.3
    assert auprc(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # 0/255 masks and 3D arrays are accepted
    assert auroc(scores.reshape(5, 10, 10), (labels * 255).reshape(5, 10, 10)) == pytest.approx(
        roc_auc_score(labels, scores))
    assert auroc(np.ones(500), labels) == pytest.approx(0.5)


def test_undefined_cases_are_nan_and_bad_input_raises():
    assert np.isnan(auprc([0.1, 0.2], [0, 0]))
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    assert auprc([0.1, 0.9], [0, 1]) == 1.0 and auroc([0.1, 0.9], [0, 1]) == 1.0
    with pytest.raises(ValueError):
        auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError):
        auprc([0.1, 0.2, 0.3], [0, 1])


def test_dice_matches_f1_and_empty_conventions():
    rng = np.random.default_rng(2)
    a, b = rng.random((10, 12, 14)) < 0.3, rng.random((10, 12, 14)) < 0.2
    assert dice(a, b) == pytest.approx(f1_score(a.ravel(), b.ravel()))
    empty = np.zeros((4, 4, 4))
    assert dice(empty, empty) == 1.0
    assert dice(empty, np.ones((4, 4, 4))) == 0.0
    with pytest.raises(ValueError):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


def test_best_dice_equals_brute_force_over_its_grid():
    scores, labels = random_case(5, ties=True, n=5000)
    value, threshold = best_dice(scores, labels, n_thresholds=64)
    grid = np.linspace(scores.min(), scores.max(), 64)
    brute = [dice(scores > t, labels) for t in grid]
    assert value == pytest.approx(max(brute))
    assert threshold == pytest.approx(grid[int(np.argmax(brute))])
    assert dice(scores > threshold, labels) == pytest.approx(value)
    separable = np.r_[np.zeros(95), np.ones(5)]
    assert best_dice(separable + 0.01 * np.arange(100) / 100, separable)[0] == 1.0


def test_lesion_detection_by_size_bins_with_anisotropic_spacing():
    spacing = (1.0, 1.0, 2.0)  # 2 mm^3 per voxel
    lesion = np.zeros((30, 40, 40), bool)
    lesion[2, 2, 2] = True                  # 0.002 mL
    lesion[5:10, 5:10, 5:10] = True          # 125 voxels = 0.25 mL
    lesion[15:25, 15:35, 15:30] = True       # 3000 voxels = 6 mL
    lesion[2:4, 30:33, 30:33] = True         # 18 voxels = 0.036 mL
    predicted = np.zeros_like(lesion)
    predicted[2, 2, 2] = True                # hits the tiniest
    predicted[20, 20, 20] = True             # one voxel inside the 6 mL lesion is enough
    predicted[0, 39, 39] = True              # a false positive: detects nothing
    result = lesion_detection_by_size(predicted, lesion, spacing)
    names = size_bin_names()
    assert names == ["<0.1 mL", "0.1-1 mL", "1-10 mL", ">=10 mL"]
    assert result["<0.1 mL"] == {"lesions": 2, "detected": 1, "rate": 0.5}
    assert result["0.1-1 mL"] == {"lesions": 1, "detected": 0, "rate": 0.0}
    assert result["1-10 mL"] == {"lesions": 1, "detected": 1, "rate": 1.0}
    assert result[">=10 mL"]["lesions"] == 0 and np.isnan(result[">=10 mL"]["rate"])
    assert result["all"] == {"lesions": 4, "detected": 2, "rate": 0.5}
    # 6-connectivity splits lesions that touch only at a corner
    corner = np.zeros((5, 5, 5), bool)
    corner[1, 1, 1] = corner[2, 2, 2] = True
    assert lesion_detection_by_size(corner, corner, 1.0, connectivity=6)["all"]["lesions"] == 2
    assert lesion_detection_by_size(corner, corner, 1.0)["all"]["lesions"] == 1


def test_false_positive_fraction_counts_lesion_free_brain_only():
    brain = np.zeros((10, 10, 10), bool)
    brain[2:8, 2:8, 2:8] = True              # 216 voxels
    lesion = np.zeros_like(brain)
    lesion[3:5, 3:5, 3:5] = True             # 8 voxels -> 208 healthy
    predicted = lesion.copy()
    predicted[6, 6, 6] = predicted[6, 6, 7] = True  # 2 false positives in the brain
    predicted[0, 0, 0] = True                # outside the brain: not counted
    assert false_positive_fraction(predicted, brain, lesion) == pytest.approx(2 / 208)
    assert false_positive_fraction(predicted, brain) == pytest.approx(10 / 216)
    assert np.isnan(false_positive_fraction(predicted, np.zeros_like(brain)))
