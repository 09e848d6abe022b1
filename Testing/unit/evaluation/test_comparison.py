"""Per-kind comparison against the atlas with a paired bootstrap interval."""
from __future__ import annotations

import numpy as np
from UADContrastiveLib.evaluation.comparison import lesion_kind, paired_bootstrap, per_kind_against


def test_lesion_kind_from_the_case_id():
    assert lesion_kind("IXI128-HH-1470+brats-brats_2013_pat0001_1") == "brats"
    assert lesion_kind("IXI128-HH-1470+wml-301D00252-20040121") == "wml"
    assert lesion_kind("IXI128-HH-1470") is None


def test_paired_interval_sees_a_consistent_gain_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.0, 1.0, 40)        # cases differ a lot from each other
    model = baseline + 0.05 + rng.normal(0, 0.01, 40)  # but the model is better on every one
    mean, low, high = paired_bootstrap(model, baseline)
    assert 0.04 < low < mean < high < 0.06


def test_per_kind_rows_pair_the_same_cases():
    rows = {"m": [{"id": f"h{i}+wml-d", "auprc": 0.3} for i in range(5)] + [{"id": "h9+brats-d", "auprc": 0.9}],
            "atlas": [{"id": f"h{i}+wml-d", "auprc": 0.2} for i in range(4)]}  # one wml case missing
    table = per_kind_against(rows, "atlas")
    (wml,) = [r for r in table if r["model"] == "m"]
    assert wml["kind"] == "wml" and wml["cases"] == 4 and np.isclose(wml["difference"], 0.1)
    assert np.isclose(wml["low"], 0.1) and np.isclose(wml["high"], 0.1)
