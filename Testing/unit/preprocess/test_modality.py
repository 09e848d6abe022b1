"""The modality check: an input whose apparent contrast is not the model's is warned about,
and the brain-resemblance refusal works for contrasts other than T1."""
from __future__ import annotations

import numpy as np
from UADContrastiveLib.preprocess.quality import (
    T2_LEAD,
    apparent_contrasts,
    correlation_ratio,
    family,
    modality_warnings,
)

NAN = float("nan")


def features(ratio: float, lead: float = NAN) -> dict:
    return {"wm_gm_ratio": ratio, "t2_lead": lead}


def test_contrast_ranges_name_what_an_input_looks_like():
    assert apparent_contrasts(features(1.6))[0] == "T1"           # IXI T1
    assert "FLAIR" in apparent_contrasts(features(0.99))          # WML FLAIR
    assert "T2" in apparent_contrasts(features(0.8)) and "T1" not in apparent_contrasts(features(0.8))


def test_the_t2_lead_tells_t2_apart_where_the_ratio_cannot():
    # IXI T2 heads on the T2 template have a T1-like ratio (1.23-1.30) and a T2 lead of 0.38-0.41
    assert apparent_contrasts(features(1.26, 0.38)) == ["T2"]
    # a measured lead below the bound rules T2 out even where the ratio would allow it
    assert "T2" not in apparent_contrasts(features(0.8, T2_LEAD - 0.05))
    assert apparent_contrasts(features(1.33, 0.10))[0] == "T1"     # IXI T1 on the T2 template


def test_each_modality_warns_about_the_others():
    t1, flair, t2 = features(1.3, -0.4), features(0.99, -0.15), features(1.26, 0.38)
    assert modality_warnings("T1", t1) == [] and modality_warnings("FLAIR", flair) == []
    assert modality_warnings("T2", t2) == []
    (warning,) = modality_warnings("T1", flair)
    assert warning.startswith("this looks FLAIR-weighted") and "the model reads T1" in warning
    (warning,) = modality_warnings("T2", t1)
    assert "this looks T1-weighted" in warning and "the model reads T2: choose a T1 model" in warning
    (warning,) = modality_warnings("T1", t2)
    assert "this looks T2-weighted" in warning and "choose a T2 model" in warning
    assert modality_warnings("flair", t2)                # case does not matter
    assert modality_warnings("DWI", t1) == []            # no measured range: not checked
    assert modality_warnings("T1", features(NAN))


def test_flair_and_t1c_are_read_by_the_t2_and_t1_families():
    assert family("FLAIR") == family("t2") == "T2" and family("T1c") == family("T1") == "T1"
    assert family("PD") == "PD"


def test_correlation_ratio_sees_inverted_contrast_but_not_noise():
    rng = np.random.default_rng(0)
    template = rng.integers(0, 3, 20000).astype(float) + 0.1 * rng.standard_normal(20000)
    inverted = 3.0 - template + 0.5 * rng.standard_normal(20000)  # T2-like: tissue order reversed
    assert np.corrcoef(inverted, template)[0, 1] < 0 and correlation_ratio(inverted, template) > 0.5
    assert correlation_ratio(rng.random(20000), template) < 0.05
    assert correlation_ratio(np.ones(500), template[:500]) == 0.0
