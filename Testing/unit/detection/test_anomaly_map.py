"""The one map chain (detection.anomaly_map) and its healthy statistics: signed, robust, defined
wherever a brain mask can reach, and no per-scan rescaling."""
from __future__ import annotations

import json

import numpy as np
import pytest
from UADContrastiveLib.detection.anomaly_map import AnomalyMapChain, read_statistics
from UADContrastiveLib.detection.healthy_statistics import HealthyStatistics, leave_one_out
from UADContrastiveLib.errors import ModelError
from UADContrastiveLib.postprocess.filtering import DEFAULTS, PostprocessConfig
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.zoo import ModelCard

SHAPE = (24, 32, 32)


def healthy_residuals(count=12, sd=0.05, seed=0):
    """Residuals of `count` healthy scans: spread `sd` inside a box brain, 0 outside."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(SHAPE, bool)
    brain[4:20, 6:26, 6:26] = True
    residuals = [np.where(brain, rng.normal(0.0, sd, SHAPE), 0.0).astype(np.float32) for _ in range(count)]
    return residuals, [brain] * count, brain


def raw_chain(statistics):
    return AnomalyMapChain(lambda volume, healthy: volume - healthy, statistics, PostprocessConfig(erosion_mm=0))


def test_scores_are_signed_and_in_units_of_the_healthy_spread():
    residuals, brains, brain = healthy_residuals(count=20, sd=0.05)
    statistics = HealthyStatistics.fit(residuals, brains)
    inside = statistics.scale_above[brain]
    assert np.median(inside) == pytest.approx(0.05, rel=0.2)
    assert np.median(statistics.scale_below[brain]) == pytest.approx(0.05, rel=0.2)
    bright, dark = np.full(SHAPE, 0.3, np.float32), np.full(SHAPE, -0.3, np.float32)
    assert np.median(statistics.score(bright)[brain]) == pytest.approx(6.0, rel=0.25)
    assert np.median(statistics.score(dark)[brain]) == pytest.approx(-6.0, rel=0.25)


def test_each_side_has_its_own_spread():
    """Residuals that are skewed (large positive, small negative deviations) give two scales."""
    rng = np.random.default_rng(1)
    brain = np.ones(SHAPE, bool)
    residuals = [np.where(rng.random(SHAPE) < 0.5, rng.normal(0, 0.1, SHAPE).__abs__(),
                          -rng.normal(0, 0.02, SHAPE).__abs__()).astype(np.float32) for _ in range(15)]
    statistics = HealthyStatistics.fit(residuals, [brain] * 15)
    assert np.median(statistics.scale_above) > 2 * np.median(statistics.scale_below)  # 5x in the data


def test_one_odd_healthy_scan_does_not_move_robust_statistics():
    residuals, brains, brain = healthy_residuals(count=15)
    clean = HealthyStatistics.fit(residuals, brains)
    odd = [residuals[0] + np.where(brain, 5.0, 0.0).astype(np.float32)] + residuals[1:]
    with_odd = HealthyStatistics.fit(odd, brains)
    assert np.max(np.abs(with_odd.median - clean.median)[brain]) < 0.03  # 0.6 healthy sd; a mean moves 0.33
    assert np.median(with_odd.scale_above[brain]) < 1.5 * np.median(clean.scale_above[brain])


def test_statistics_reach_beyond_the_fitted_brains_without_exploding():
    """A user's brain mask reaching past the statistics brains gets regional, not floor, values."""
    residuals, brains, brain = healthy_residuals(count=12, sd=0.05)
    statistics = HealthyStatistics.fit(residuals, brains)
    assert np.isfinite(statistics.median).all() and np.isfinite(statistics.scale_above).all()
    outside = ~brain
    assert statistics.scale_above[outside].min() > 0.02  # near the whole-brain spread, no tiny floor
    rim = np.zeros(SHAPE, bool)
    rim[4:20, 5, 6:26] = True  # one voxel outside the fitted brains
    typical = np.where(rim, 0.05, 0.0).astype(np.float32)
    assert np.abs(statistics.score(typical)[rim]).max() < 3.0


def test_leave_one_out_leaves_each_scan_out():
    residuals, brains, _ = healthy_residuals(count=5)
    names = [f"scan{i}" for i in range(5)]
    fitted = list(leave_one_out(residuals, brains, names))
    assert [s.scans for s in fitted] == [[n for n in names if n != left] for left in names]


def test_brighter_and_darker_anomalies_both_score():
    residuals, brains, brain = healthy_residuals(count=12)
    statistics = HealthyStatistics.fit(residuals, brains)
    volume = np.zeros(SHAPE, np.float32)
    volume[8:12, 10:14, 10:14] = 0.4    # brighter than the reconstruction
    volume[8:12, 18:22, 18:22] = -0.4   # darker
    chain = raw_chain(statistics)
    anomaly = chain.model_map(volume, np.zeros(SHAPE, np.float32), brain)
    assert anomaly[9:11, 11:13, 11:13].min() > 5 and anomaly[9:11, 19:21, 19:21].min() > 5
    bright_only = AnomalyMapChain(chain.residual, statistics, PostprocessConfig(erosion_mm=0, polarity="positive"))
    healthy = np.zeros(SHAPE, np.float32)
    assert bright_only.model_map(volume, healthy, brain)[9:11, 11:13, 11:13].min() > 5
    # the darker blob adds nothing anywhere: its map is never above that of the same scan without it
    darker_only = np.where(volume < 0, volume, 0).astype(np.float32)
    without = bright_only.model_map(healthy, healthy, brain)
    assert np.all(bright_only.model_map(darker_only, healthy, brain) <= without)


def test_a_lesion_does_not_change_the_score_elsewhere():
    """No per-scan rescaling: the same voxels get the same map with or without a large lesion."""
    residuals, brains, brain = healthy_residuals(count=12)
    statistics = HealthyStatistics.fit(residuals, brains)
    scan = residuals[0].copy()
    lesioned = scan.copy()
    lesioned[5:11, 7:15, 7:15] = 1.0  # a lesion of 6 % of the brain
    shipped = ModelCard.read(SHIPPED_MODELS / "contrastive-diffusion-t1").postprocess
    chain = AnomalyMapChain(lambda volume, healthy: volume - healthy, statistics, shipped)
    healthy = np.zeros(SHAPE, np.float32)
    far = np.ones(SHAPE, bool)
    far[0:17, 1:21, 1:21] = False  # the lesion and the Gaussian's reach around it (truncated at 4 sigma: 5 voxels)
    assert (far & brain).sum() > 1500
    np.testing.assert_array_equal(chain.model_map(scan, healthy, brain)[far & brain],
                                  chain.model_map(lesioned, healthy, brain)[far & brain])


def test_every_shipped_card_uses_the_one_default_postprocessing():
    for card_path in sorted(SHIPPED_MODELS.glob("*/model.json")):
        assert ModelCard.read(card_path.parent).postprocess == DEFAULTS, card_path.parent.name
    assert DEFAULTS.normalise_percentile is None and DEFAULTS.polarity == "absolute"


def test_a_card_without_postprocessing_gets_the_default(tmp_path):
    source = SHIPPED_MODELS / "zscore-atlas-t1"
    card = json.loads((source / "model.json").read_text(encoding="utf-8"))
    card.pop("postprocess")
    (tmp_path / "model.json").write_text(json.dumps(card), encoding="utf-8")
    assert ModelCard.read(tmp_path).postprocess == DEFAULTS
    card["postprocess"] = {"filter": "median"}  # a partial entry: the rest is the default too
    (tmp_path / "model.json").write_text(json.dumps(card), encoding="utf-8")
    assert ModelCard.read(tmp_path).postprocess == PostprocessConfig(filter="median")


def test_statistics_of_the_old_kind_are_refused_with_what_to_do(tmp_path):
    card = ModelCard.read(SHIPPED_MODELS / "zscore-atlas-t1")
    card.files = {"residual_stats.npz": "0" * 64}
    with pytest.raises(ModelError, match="uadc calibrate --model"):
        read_statistics(tmp_path, card)


def test_statistics_round_trip(tmp_path):
    residuals, brains, brain = healthy_residuals(count=4)
    statistics = HealthyStatistics.fit(residuals, brains)
    statistics.save(tmp_path)
    loaded = HealthyStatistics.load(tmp_path)
    np.testing.assert_array_equal(loaded.score(residuals[0]), statistics.score(residuals[0]))


def test_a_scan_flagged_across_the_brain_gets_a_warning_a_few_findings_do_not():
    from UADContrastiveLib.detection.detector import widespread_flagging_warning

    brain = np.zeros(SHAPE, bool)
    brain[4:20, 6:26, 6:26] = True
    few = np.zeros(SHAPE, bool)
    few[8:10, 8:10, 8:12] = True  # 16 of 6400 brain voxels
    assert widespread_flagging_warning(few, brain) is None
    wide = brain.copy()
    wide[:12] = False  # half the brain
    warning = widespread_flagging_warning(wide, brain)
    assert warning.startswith("50 % of the brain is flagged") and "Training on your own healthy scans" in warning
