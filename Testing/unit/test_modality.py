"""The modality check: an input whose apparent contrast is not the model's is warned about,
and the brain-resemblance refusal works for contrasts other than T1."""
from __future__ import annotations

import numpy as np
from UADContrastiveLib.preprocess.quality import (
    apparent_contrasts,
    correlation_ratio,
    modality_warnings,
)


def test_contrast_ranges_name_what_an_input_looks_like():
    assert apparent_contrasts(1.6)[0] == "T1"           # IXI T1
    assert "FLAIR" in apparent_contrasts(0.99)          # WML FLAIR
    assert "T2" in apparent_contrasts(0.8) and "T1" not in apparent_contrasts(0.8)


def test_each_modality_warns_about_the_others():
    t1, flair, t2 = {"wm_gm_ratio": 1.3}, {"wm_gm_ratio": 0.99}, {"wm_gm_ratio": 0.78}
    assert modality_warnings("T1", t1) == [] and modality_warnings("FLAIR", flair) == []
    assert modality_warnings("T2", t2) == []
    (warning,) = modality_warnings("T1", flair)
    assert "does not look T1-weighted" in warning and "FLAIR" in warning
    (warning,) = modality_warnings("FLAIR", t1)
    assert "does not look FLAIR-weighted" in warning and "T1" in warning
    assert modality_warnings("flair", t2)                # case does not matter
    assert modality_warnings("DWI", t1) == []            # no measured range: not checked
    assert modality_warnings("T1", {"wm_gm_ratio": float("nan")})


def test_correlation_ratio_sees_inverted_contrast_but_not_noise():
    rng = np.random.default_rng(0)
    template = rng.integers(0, 3, 20000).astype(float) + 0.1 * rng.standard_normal(20000)
    inverted = 3.0 - template + 0.5 * rng.standard_normal(20000)  # T2-like: tissue order reversed
    assert np.corrcoef(inverted, template)[0, 1] < 0 and correlation_ratio(inverted, template) > 0.5
    assert correlation_ratio(rng.random(20000), template) < 0.05
    assert correlation_ratio(np.ones(500), template[:500]) == 0.0
