"""Step and inference times of the latent engines' networks (random weights), for sizing recipes.

    OMP_NUM_THREADS=1 python Testing/benchmarks/bench_latent_networks.py [--recipe mad-ad-t1.yaml] [--threads 1]

Prints seconds per training step at the recipe's batch sizes (autoencoder; MAD-AD and latent DDPM
denoisers) and seconds per slice of each engine's healing, medians after a warm-up. Figures,
never a pass/fail.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from UADContrastiveLib.engines.latent_autoencoder.network import build_codec
from UADContrastiveLib.engines.latent_autoencoder.training import autoencoder_loss
from UADContrastiveLib.engines.latent_ddpm import network as ldm_network
from UADContrastiveLib.engines.latent_ddpm.engine import DEFAULT_INFERENCE as LDM_INFERENCE
from UADContrastiveLib.engines.latent_ddpm.engine import LatentDdpmEngine
from UADContrastiveLib.engines.mad_ad import masking
from UADContrastiveLib.engines.mad_ad import network as mad_network
from UADContrastiveLib.engines.mad_ad.engine import DEFAULT_INFERENCE as MAD_INFERENCE
from UADContrastiveLib.engines.mad_ad.engine import MadAdEngine
from UADContrastiveLib.engines.mad_ad.training import mad_ad_loss
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.training.config import load_config


def median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(module, loss_fn):
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(SHIPPED_MODELS / "recipes" / "mad-ad-t1.yaml"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load_config(args.recipe)
    ae_cfg, den_cfg = config["autoencoder"], config["denoiser"]
    codec = build_codec(ae_cfg["network"])
    channels = codec.latent_channels
    b_ae, b_den = int(ae_cfg["batch_size"]), int(den_cfg["batch_size"])
    slices = torch.rand(b_ae, 1, 96, 96)
    print(f"torch threads {torch.get_num_threads()}; latent {channels} x 24 x 24")
    seconds = median_seconds(train_step(codec, lambda: autoencoder_loss(codec, slices, 1e-6, 0.5)[0]), args.repeats)
    print(f"autoencoder {ae_cfg['network']['channels']}: {seconds:.3f} s/step at batch {b_ae} "
          f"({seconds / b_ae:.4f} s/slice)")
    mad = mad_network.build_denoiser(channels, den_cfg["network"])
    z = torch.randn(b_den, channels, 24, 24)
    mask = masking.random_patch_mask(b_den, 24, 24, torch.Generator().manual_seed(0))[0]
    t = torch.randint(0, 10, (b_den,))
    seconds = median_seconds(train_step(mad, lambda: mad_ad_loss(mad, z, z, mask, t, 0.5)[0]), args.repeats)
    print(f"MAD-AD denoiser {den_cfg['network']['channels']}: {seconds:.3f} s/step at batch {b_den}")
    ldm = ldm_network.build_denoiser(channels, den_cfg["network"])
    t = torch.randint(0, 1000, (b_den,))
    seconds = median_seconds(train_step(ldm, lambda: (ldm(z, t) - z).pow(2).mean()), args.repeats)
    print(f"latent DDPM denoiser {den_cfg['network']['channels']}: {seconds:.3f} s/step at batch {b_den}")
    network = {"autoencoder": ae_cfg["network"], "denoiser": den_cfg["network"]}
    brains = torch.zeros(32, 1, 96, 96)
    brains[..., 16:80, 16:80] = 1
    images = torch.rand(32, 1, 96, 96) * brains
    with torch.inference_mode():
        for engine in (MadAdEngine(codec, mad, {**network, "schedule": masking.DEFAULT_SCHEDULE},
                                   {**MAD_INFERENCE, "mask_threshold": 0.0}, "cpu"),
                       LatentDdpmEngine(codec, ldm, network, {**LDM_INFERENCE, "change_threshold": 0.0}, "cpu")):
            seconds = median_seconds(lambda e=engine: e.heal_slices(images, brains, torch.Generator().manual_seed(0)),
                                     max(1, args.repeats // 2))
            print(f"{engine.name} healing (every brain cell changed, worst case): {seconds / len(images):.4f} s/slice "
                  f"(a 65-slice volume: {65 * seconds / len(images):.1f} s)")


if __name__ == "__main__":
    main()
