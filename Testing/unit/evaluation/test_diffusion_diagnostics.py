"""evaluation.diffusion_diagnostics on a tiny contrastive model and synthetic model-grid heads:
the latent-swap test, one pass per timestep, the population-mean baseline."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from UADContrastiveLib.engines import load_engine
from UADContrastiveLib.evaluation import diffusion_diagnostics as diagnostics
from UADContrastiveLib.evaluation.tuning import GridCase


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tiny_model import make_tiny_model

    return load_engine(make_tiny_model(tmp_path_factory.mktemp("diagnostics") / "tiny", responsive=True), "cpu")


def synthetic_head(seed: int, z: int = 6, size: int = 32) -> GridCase:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices((z, size, size))
    brain = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.35) ** 2) & (zz > 0)
    volume = np.where(brain, np.clip(0.6 + 0.15 * rng.standard_normal(brain.shape), 0, 1.5), 0).astype(np.float32)
    return GridCase(f"H{seed}", volume, brain)


def test_the_swap_test_measures_what_another_heads_latent_changes(engine):
    a, b = synthetic_head(0), synthetic_head(1)
    assert diagnostics.swap_change(engine, [a, a], slices=3) == [0.0, 0.0]  # its own latent: nothing changes
    changes = diagnostics.swap_change(engine, [a, b], slices=3)
    assert len(changes) == 2 and all(c > 0 for c in changes)


def test_one_pass_per_timestep_leaves_the_model_as_it_was(engine):
    healthy = synthetic_head(0)
    lesion = np.zeros_like(healthy.brain)
    lesion[2:4, 12:18, 12:18] = True
    lesioned = GridCase("H0+lesion", np.where(lesion, 1.4, healthy.volume).astype(np.float32), healthy.brain,
                        lesion, healthy.volume)
    single = diagnostics.at_timestep(engine, 250)
    assert single.inference["timesteps"] == [250] and engine.inference["timesteps"] == [250, 500, 750]
    assert single.unet is engine.unet  # the same weights: only the noise level differs
    figures = diagnostics.per_timestep(engine, [healthy], [lesioned], timesteps=(250, 750), log=lambda _: None)
    assert list(figures) == ["250", "750"]
    for values in figures.values():
        assert values["healthy_mae"] > 0 and np.isfinite(values["contrast_removed"])
    assert figures["250"] != figures["750"]  # the noise level changes the reconstruction


def test_the_population_mean_baseline(tmp_path):
    heads = [synthetic_head(seed) for seed in range(3)]
    for head in heads:
        np.savez_compressed(tmp_path / f"{head.id}.npz", volume=head.volume, brain=head.brain)
    mean = diagnostics.population_mean([h.id for h in heads], tmp_path)
    np.testing.assert_allclose(mean, np.mean([h.volume for h in heads], axis=0), rtol=1e-6)
    expected = np.mean([np.abs(h.volume - mean)[h.brain].mean() for h in heads])
    assert diagnostics.population_mean_mae(mean, heads) == pytest.approx(expected) and expected > 0
