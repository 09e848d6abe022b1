"""Post-processing: filtering, thresholding into components, threshold calibration."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from UADContrastiveLib.errors import ModelError
from UADContrastiveLib.postprocess.calibration import (
    dice_optimal_threshold,
    flagged_fraction,
    healthy_fpr_thresholds,
)
from UADContrastiveLib.postprocess.components import ComponentThresholder, threshold_components
from UADContrastiveLib.postprocess.filtering import (
    PostprocessConfig,
    erode_brain,
    filter_anomaly_map,
)
from UADContrastiveLib.postprocess.presets import PER_SCAN_FACTOR


def two_blobs() -> np.ndarray:
    """A 3x3x3 cube (27 voxels) and a 2x2x5 bar (20 voxels) in an empty 20^3 volume."""
    volume = np.zeros((20, 20, 20), np.float32)
    volume[2:5, 5:8, 10:13] = 1.0  # z, y, x
    volume[10:12, 12:14, 3:8] = 0.7
    return volume


def test_components_count_voxels_volume_and_centroid():
    mask, components = threshold_components(two_blobs(), 0.5, 0.0, (0.5, 1.0, 3.0))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert int(mask.sum()) == 27 + 20
    assert [c["voxels"] for c in components] == [27, 20]
    assert [c["label"] for c in components] == [1, 2]
    assert components[0]["volume_ml"] == pytest.approx(27 * 1.5 / 1000)
    # centroid in (i, j, k) = (x, y, z) index order
    assert components[0]["centroid_ijk"] == pytest.approx((11.0, 6.0, 3.0))
    assert components[1]["centroid_ijk"] == pytest.approx((5.0, 12.5, 10.5))


def test_threshold_is_strict_and_above_all_gives_nothing():
    mask, components = threshold_components(two_blobs(), 0.7, 0.0, 1.0)
    assert [c["voxels"] for c in components] == [27]  # the 0.7 bar is not > 0.7
    mask, components = threshold_components(two_blobs(), 1.0, 0.0, 1.0)
    assert components == [] and not mask.any()


def test_min_size_in_mm3_with_anisotropic_spacing():
    spacing = (0.5, 1.0, 3.0)  # 1.5 mm^3 per voxel: cube 40.5 mm^3, bar 30 mm^3
    _, kept = threshold_components(two_blobs(), 0.5, 30.0, spacing)
    assert [c["voxels"] for c in kept] == [27, 20]  # exactly the minimum is kept
    mask, kept = threshold_components(two_blobs(), 0.5, 30.1, spacing)
    assert [c["voxels"] for c in kept] == [27] and int(mask.sum()) == 27
    assert not mask[10:12, 12:14, 3:8].any()
    _, kept = threshold_components(two_blobs(), 0.5, 40.6, spacing)
    assert kept == []
    # Same voxels, isotropic 1 mm: the bar (20 mm^3) now falls below 25 mm^3.
    _, kept = threshold_components(two_blobs(), 0.5, 25.0, (1.0, 1.0, 1.0))
    assert [c["voxels"] for c in kept] == [27]


def test_connectivity_diagonal_neighbours():
    volume = np.zeros((6, 6, 6), np.float32)
    volume[1, 1, 1] = volume[2, 2, 2] = 1.0  # touch at a corner only
    assert len(threshold_components(volume, 0.5, 0, 1.0, connectivity=26)[1]) == 1
    assert len(threshold_components(volume, 0.5, 0, 1.0, connectivity=6)[1]) == 2
    with pytest.raises(ValueError):
        threshold_components(volume, 0.5, 0, 1.0, connectivity=18)


@pytest.mark.parametrize("connectivity,rank", [(26, 3), (6, 1)])
def test_components_agree_with_scipy_label(connectivity, rank):
    rng = np.random.default_rng(3)
    volume = ndimage.gaussian_filter(rng.standard_normal((30, 34, 38)), 1.0).astype(np.float32)
    threshold = float(np.percentile(volume, 90))
    mask, components = threshold_components(volume, threshold, 0.0, 1.0, connectivity)
    labels, count = ndimage.label(volume > threshold, ndimage.generate_binary_structure(3, rank))
    expected = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    assert len(components) == count > 5
    assert [c["voxels"] for c in components] == expected.tolist()
    np.testing.assert_array_equal(mask, volume > threshold)


def test_component_thresholder_matches_function_and_caches():
    rng = np.random.default_rng(4)
    volume = np.zeros((40, 44, 48), np.float32)
    volume[5:35, 6:38, 8:40] = np.abs(ndimage.gaussian_filter(rng.standard_normal((30, 32, 32)), 1.2))
    session = ComponentThresholder(volume, (0.9, 0.9, 3.0))
    for threshold in (-1.0, 0.0, 0.05, 0.1, 0.2):  # -1: below the map's floor, every voxel above
        for min_size in (0.0, 20.0, 200.0):
            mask, components = session(threshold, min_size)
            expected_mask, expected = threshold_components(volume, threshold, min_size, (0.9, 0.9, 3.0))
            np.testing.assert_array_equal(mask, expected_mask)
            assert components == expected
            # the sliders' summary: same mask, the count and volume of the same components
            cropped, count, volume_ml = session.cropped_mask_and_totals(threshold, min_size)
            np.testing.assert_array_equal(cropped.full(volume.shape), expected_mask)
            if cropped.box is not None and threshold >= 0:  # cropped: within the slices that hold flagged voxels
                z_above = np.flatnonzero(np.any(volume > threshold, axis=(1, 2)))
                assert z_above[0] <= cropped.box[0].start and cropped.box[0].stop <= z_above[-1] + 1
            assert count == len(expected)
            assert volume_ml == pytest.approx(sum(c["volume_ml"] for c in expected), abs=1e-4)
    assert session.cropped_mask_and_totals(0.2, 0.0)[1] > 1  # the loop above saw several components
    session(0.1, 0.0)
    labelled = session._last
    session(0.1, 500.0)
    assert session._last is labelled  # only the size changed: no relabelling


def test_erosion_in_mm_respects_spacing():
    brain = np.zeros((20, 20, 20), bool)
    brain[2:18, 2:18, 2:18] = True
    eroded = erode_brain(brain, 4.0, 2.0)  # 2 voxels
    assert eroded[4:16, 4:16, 4:16].all() and eroded.sum() == 12**3
    eroded = erode_brain(brain, 4.0, (4.0, 2.0, 2.0))  # 1 voxel along z, 2 in-plane
    assert eroded.sum() == 14 * 12 * 12


def test_filter_zero_outside_eroded_brain_and_median_removes_speckle():
    brain = np.zeros((24, 24, 24), bool)
    brain[2:22, 2:22, 2:22] = True
    residual = np.zeros(brain.shape, np.float32)
    residual[12, 12, 12] = 5.0            # single-voxel speckle
    residual[5:8, 14:17, 14:17] = -2.0    # 3x3x3 dark lesion
    residual[2, :, :] = 9.0               # rim noise at the brain edge
    residual[0, 0, 0] = 7.0               # outside the brain
    anomaly = filter_anomaly_map(residual, brain, erosion_mm=4.0, spacing_mm=2.0, filter="median", size=3)
    inside = erode_brain(brain, 4.0, 2.0)
    assert anomaly.dtype == np.float32 and anomaly.shape == brain.shape
    assert not anomaly[~inside].any()
    assert anomaly[12, 12, 12] == 0.0     # speckle gone
    assert anomaly[6, 15, 15] == pytest.approx(2.0)  # lesion centre kept (absolute value)
    positive = filter_anomaly_map(residual, brain, 4.0, 2.0, "median", 3, polarity="positive")
    assert positive[6, 15, 15] == 0.0     # a dark lesion is not a positive anomaly
    negative = filter_anomaly_map(residual, brain, 4.0, 2.0, "median", 3, polarity="negative")
    assert negative[6, 15, 15] == pytest.approx(2.0)


def test_gaussian_is_normalised_at_the_edge_and_percentile_normalisation():
    brain = np.zeros((24, 24, 24), bool)
    brain[2:22, 2:22, 2:22] = True
    residual = np.full(brain.shape, 0.5, np.float32)
    anomaly = filter_anomaly_map(residual, brain, 2.0, 2.0, "gaussian", 3)
    inside = erode_brain(brain, 2.0, 2.0)
    np.testing.assert_allclose(anomaly[inside], 0.5, rtol=1e-4)  # constant stays constant, even at the edge
    scaled = filter_anomaly_map(residual, brain, 2.0, 2.0, "gaussian", 3, normalise_percentile=99)
    np.testing.assert_allclose(scaled[inside], 1.0, rtol=1e-4)


def test_config_round_trip_and_validation():
    config = PostprocessConfig(erosion_mm=6.0, filter="gaussian", size=5, polarity="positive")
    assert PostprocessConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["polarity"] == "positive"
    # the detection rule (threshold, minimum size) lives with the card's calibrated thresholds
    with pytest.raises(ModelError, match="unknown keys"):
        PostprocessConfig.from_dict({"threshold": 0.3})
    with pytest.raises(ModelError, match="unknown keys"):
        PostprocessConfig.from_dict({**config.to_dict(), "surprise": 1})
    with pytest.raises(ModelError, match="filter"):
        PostprocessConfig.from_dict({**config.to_dict(), "filter": "mean"})
    with pytest.raises(ValueError):
        filter_anomaly_map(np.zeros((8, 8, 8)), np.ones((8, 8, 8)), filter="box")


def healthy_maps(count=3, seed=5):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        brain = np.zeros((24, 28, 28), bool)
        brain[3:21, 3:25, 3:25] = True
        noise = np.abs(ndimage.gaussian_filter(rng.standard_normal(brain.shape), 0.8)).astype(np.float32)
        pairs.append((np.where(brain, noise, 0).astype(np.float32), brain))
    return pairs


def test_healthy_fpr_thresholds_without_size_filter_are_quantiles():
    pairs = healthy_maps()
    values = np.sort(np.concatenate([m[b] for m, b in pairs]))
    thresholds = healthy_fpr_thresholds(pairs, fprs=(0.01, 0.001), min_size_mm3=0.0, spacing=2.0,
                                        per_scan_factor=None)
    for fpr, threshold in thresholds.items():
        assert np.mean(values > threshold) <= fpr
        lower = values[values < threshold].max()  # the next candidate down flags too much
        assert np.mean(values > lower) > fpr
        assert flagged_fraction(pairs, threshold, 0.0, 2.0) == pytest.approx(np.mean(values > threshold))


def test_healthy_fpr_thresholds_with_size_filter_are_lower_but_still_bounded():
    pairs = healthy_maps()
    plain = healthy_fpr_thresholds(pairs, fprs=(0.02,), min_size_mm3=0.0, spacing=2.0, per_scan_factor=None)[0.02]
    sized = healthy_fpr_thresholds(pairs, fprs=(0.02,), min_size_mm3=80.0, spacing=2.0, per_scan_factor=None)[0.02]
    assert sized < plain  # small components are dropped, so a lower threshold reaches 2 %
    assert flagged_fraction(pairs, sized, 80.0, 2.0) <= 0.02
    values = np.sort(np.concatenate([m[b] for m, b in pairs]))
    lower = values[values < sized].max()
    assert flagged_fraction(pairs, lower, 80.0, 2.0) > 0.02


def test_healthy_fpr_thresholds_hold_for_every_scan_not_only_pooled():
    """One healthy brain with a heavier tail than the rest: pooled, it would carry most of the
    flagged voxels; the per-scan limit raises the threshold until it, too, stays near the share."""
    pairs = healthy_maps(4)
    unusual_map, brain = pairs[0]
    pairs[0] = (unusual_map * 1.6, brain)
    fpr, factor = 0.01, 1.5
    pooled = healthy_fpr_thresholds(pairs, fprs=(fpr,), spacing=2.0, per_scan_factor=None)[fpr]
    assert flagged_fraction(pairs[:1], pooled, 0.0, 2.0) > 2 * fpr  # the unusual brain, pooled
    every = healthy_fpr_thresholds(pairs, fprs=(fpr,), spacing=2.0, per_scan_factor=factor)[fpr]
    shares = [flagged_fraction([pair], every, 0.0, 2.0) for pair in pairs]
    assert max(shares) <= factor * fpr
    assert flagged_fraction(pairs, every, 0.0, 2.0) <= fpr
    # the lowest such threshold: just below it the unusual brain exceeds its limit
    values = np.sort(unusual_map[brain] * 1.6)
    assert flagged_fraction(pairs[:1], values[values < every].max(), 0.0, 2.0) > factor * fpr
    assert every == max(pooled, healthy_fpr_thresholds(pairs[:1], fprs=(factor * fpr,), spacing=2.0)[factor * fpr])
    # the product's calibration: no healthy brain over the share
    product = healthy_fpr_thresholds(pairs, fprs=(fpr,), spacing=2.0)[fpr]
    assert PER_SCAN_FACTOR == 1.0 and product > every
    assert max(flagged_fraction([pair], product, 0.0, 2.0) for pair in pairs) <= fpr


def test_dice_optimal_threshold_separates_lesion_from_bright_healthy_tissue():
    pairs = healthy_maps(2)
    maps, lesions, brains = [], [], []
    for anomaly, brain in pairs:
        anomaly = anomaly * 0.1  # healthy values below ~0.4
        lesion = np.zeros(brain.shape, bool)
        lesion[8:12, 8:12, 8:12] = True
        anomaly[lesion] = 0.9
        anomaly[15:17, 15:17, 15:17] = 0.6  # a bright healthy patch: must stay below the threshold
        maps.append(anomaly)
        lesions.append(lesion)
        brains.append(brain)
    threshold, score = dice_optimal_threshold(maps, lesions, brains, candidates=np.linspace(0, 1, 101))
    assert 0.6 <= threshold < 0.9 and score == pytest.approx(1.0)
    threshold, score = dice_optimal_threshold(maps, lesions, brains, candidates=50, pooled=False)
    assert score == pytest.approx(1.0)
