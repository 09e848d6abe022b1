"""engines.diffusion_common.build_scheduler: the one noise-schedule builder gives every shipped
card the schedule its paper defines (alpha-bar computed here independently, in numpy)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from UADContrastiveLib.engines.contrastive_diffusion.diffusion import (
    DEFAULT_SCHEDULE as CONTRASTIVE_SCHEDULE,
)
from UADContrastiveLib.engines.diffusion_common import build_scheduler
from UADContrastiveLib.engines.latent_ddpm.network import DEFAULT_SCHEDULE as LATENT_DDPM_SCHEDULE
from UADContrastiveLib.engines.mad_ad.masking import DEFAULT_SCHEDULE as MAD_AD_SCHEDULE
from UADContrastiveLib.resources import SHIPPED_MODELS


def cosine_alpha_bar(steps: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: f(t) = cos^2((t/T + s)/(1 + s) pi/2), alpha-bar_t =
    f(t + 1)/f(0) with each step's beta capped at 0.999."""
    f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1 - betas)


def beta_alpha_bar(betas: np.ndarray) -> np.ndarray:
    return np.cumprod(1 - betas)


EXPECTED = {
    "cosine": lambda entry: cosine_alpha_bar(entry["num_train_timesteps"]),
    "linear_beta": lambda entry: beta_alpha_bar(
        np.linspace(entry["beta_start"], entry["beta_end"], entry["num_train_timesteps"])),
    "scaled_linear_beta": lambda entry: beta_alpha_bar(
        np.linspace(entry["beta_start"] ** 0.5, entry["beta_end"] ** 0.5, entry["num_train_timesteps"]) ** 2),
}


@pytest.mark.parametrize("model", ["contrastive-diffusion-t1", "contrastive-diffusion-t2", "ddpm-t1", "mad-ad-t1",
                                   "latent-ddpm-t1"])
def test_every_shipped_diffusion_card_gets_its_papers_schedule(model):
    entry = json.loads((SHIPPED_MODELS / model / "model.json").read_text(encoding="utf-8"))["network"]["schedule"]
    defaults = {"contrastive-diffusion-t1": CONTRASTIVE_SCHEDULE, "contrastive-diffusion-t2": CONTRASTIVE_SCHEDULE,
                "ddpm-t1": CONTRASTIVE_SCHEDULE,
                "mad-ad-t1": MAD_AD_SCHEDULE, "latent-ddpm-t1": LATENT_DDPM_SCHEDULE}[model]
    scheduler = build_scheduler(entry, defaults)
    assert scheduler.num_train_timesteps == entry["num_train_timesteps"] and scheduler.prediction_type == "sample"
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), EXPECTED[entry["schedule"]](entry),
                               rtol=1e-4, atol=1e-6)
    # the card's entry is the engine's default: a card without one gets the same schedule
    np.testing.assert_array_equal(build_scheduler(None, defaults).alphas_cumprod.numpy(),
                                  scheduler.alphas_cumprod.numpy())


def test_a_schedule_entry_overrides_the_engines_defaults():
    scheduler = build_scheduler({"num_train_timesteps": 20, "beta_end": 0.1}, MAD_AD_SCHEDULE)
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(),
                               beta_alpha_bar(np.linspace(MAD_AD_SCHEDULE["beta_start"], 0.1, 20)), rtol=1e-5)
