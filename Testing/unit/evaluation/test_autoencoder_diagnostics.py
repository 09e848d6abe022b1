"""evaluation.autoencoder_diagnostics: what share of a lesion's contrast a reconstruction keeps,
the lesion kind of a tuning case, and the slice-wise autoencoding (brain only, deterministic)."""
from __future__ import annotations

import numpy as np
import torch
from UADContrastiveLib.engines.latent_autoencoder.network import build_codec
from UADContrastiveLib.evaluation import autoencoder_diagnostics as diagnostics
from UADContrastiveLib.evaluation.tuning import GridCase


def lesioned_case() -> GridCase:
    healthy = np.full((4, 16, 16), 0.6, np.float32)
    brain = np.zeros(healthy.shape, bool)
    brain[:, 2:14, 2:14] = True
    lesion = np.zeros_like(brain)
    lesion[1:3, 6:9, 6:9] = True
    volume = np.where(lesion, 0.3, healthy).astype(np.float32)  # a dark lesion, 0.3 below its tissue
    return GridCase("IXI002+brats-pat1", volume, brain, lesion, healthy)


def test_lesion_kept_is_one_for_the_input_zero_for_the_healthy_head_and_a_half_between():
    case = lesioned_case()
    assert diagnostics.lesion_kept(case, case.volume) == 1.0
    assert diagnostics.lesion_kept(case, case.healthy_head) == 0.0
    assert abs(diagnostics.lesion_kept(case, (case.volume + case.healthy_head) / 2) - 0.5) < 1e-6
    unchanged = GridCase(case.id, case.healthy_head, case.brain, case.lesion, case.healthy_head)
    assert diagnostics.lesion_kept(unchanged, case.volume) is None  # nothing inserted: nothing to keep


def test_lesion_kind_reads_the_donor_kind_of_a_tuning_case():
    assert [diagnostics.lesion_kind(c) for c in ("IXI1+brats-pat1", "IXI1+wml-3", "IXI1+stroke-sub-9")] == [
        "glioma", "wml", "stroke"]


def test_autoencode_changes_brain_slices_only_and_is_deterministic():
    torch.manual_seed(0)
    codec = build_codec({"channels": [4, 8], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4}).eval()
    case = lesioned_case()
    brain = case.brain.copy()
    brain[0] = False  # a slice without brain is not autoencoded at all
    first = diagnostics.autoencode(codec, case.volume, brain)
    assert first.shape == case.volume.shape and first.dtype == np.float32
    assert np.array_equal(first[~brain], case.volume[~brain])
    assert not np.allclose(first[brain], case.volume[brain])  # an untrained codec does change the brain
    assert np.array_equal(first, diagnostics.autoencode(codec, case.volume, brain))
