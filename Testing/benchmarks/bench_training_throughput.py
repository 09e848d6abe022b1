"""Training throughput of a recipe's diffusion stage (UNet + jointly trained encoder) on this
machine, and its FLOPs per training slice (torch.utils.flop_counter), from which a GPU time is
ESTIMATED (no GPU measured). Prints a table; never a pass/fail.

Usage: python Testing/benchmarks/bench_training_throughput.py [--config RECIPE] [--steps 6]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch


def training_step_setup(config: dict):
    from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
    from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder
    from UADContrastiveLib.engines.contrastive_diffusion.stages import DiffusionModule

    cfg = config["diffusion"]
    encoder = build_encoder(config["encoder"]["network"])
    unet = build_unet({**cfg["network"]["unet"], "latent_dim": encoder.latent_dim})
    module = DiffusionModule(unet, encoder)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    batch = int(cfg["batch_size"])
    x = torch.rand(batch, 1, 96, 96)
    t = torch.randint(0, 1000, (batch,))

    def step():
        prediction = module(x, t, x, None)
        loss = (prediction - x).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, batch


def main(argv=None) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    from UADContrastiveLib.resources import SHIPPED_MODELS
    from UADContrastiveLib.training.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(SHIPPED_MODELS / "recipes" / "contrastive-diffusion-t1.yaml"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    step, batch = training_step_setup(load_config(args.config))
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"recipe {Path(args.config).name}\n")
    print("| batch | threads | s per step | slices/s (CPU) | GFLOP per slice (fwd + bwd) |")
    print("|---|---|---|---|---|")
    print(f"| {batch} | {args.threads} | {seconds:.2f} | {batch / seconds:.1f} | {flops / batch / 1e9:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
