"""The network side: model-load time, reconstruction seconds of the shipped model beside the
reference method's network size (measured in the same process, so the ratio holds under any
load), and training throughput. Prints figures; no pass/fail.

    python Testing/benchmarks/bench_network.py [--model NAME|PATH] [--slices 50] [--reference-slices 8]

Reference size (Patricio et al. 2025): UNet 128-256-256, 3 residual blocks per level,
ResNet-50 encoder. It is timed on --reference-slices slices (one batch, every timestep) and
scaled to --slices, because the full run takes minutes; pass --reference-slices 50 for all.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

REFERENCE_UNET = {"channels": [128, 256, 256], "num_res_blocks": 3, "norm_num_groups": 32,
                  "attention_levels": [False, False, False], "latent_dim": 128}
REFERENCE_ENCODER = {"block": "bottleneck", "layers": [3, 4, 6, 3], "block_inplanes": [64, 128, 256, 512]}


def timed(function, repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s of this process) over `repeats` calls after one warm-up."""
    function()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def reconstruction_seconds(engine, slices, repeats: int) -> tuple[float, float]:
    import torch

    return timed(lambda: engine.reconstruct_slices(slices, torch.Generator().manual_seed(0)), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--slices", type=int, default=50, help="brain slices of one volume")
    parser.add_argument("--reference-slices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=32)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    start = time.perf_counter()
    import torch
    torch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    from UADContrastiveLib.engines.contrastive_diffusion import diffusion, encoder  # noqa: F401  (MONAI)
    monai_seconds = time.perf_counter() - start
    from UADContrastiveLib.engines import load_engine
    from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
    from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder
    from UADContrastiveLib.engines.contrastive_diffusion.engine import ContrastiveDiffusionEngine
    from UADContrastiveLib.zoo import ModelCard, resolve_model

    model_dir = resolve_model(args.model)
    card = ModelCard.read(model_dir)
    start = time.perf_counter()
    engine = load_engine(model_dir, "cpu")
    load_seconds = time.perf_counter() - start
    print(f"model load: import torch {torch_seconds:.2f} s, import MONAI networks {monai_seconds:.2f} s, "
          f"checksums + build + weights {load_seconds:.2f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    size = card.model_grid.size[0]
    timesteps = len(engine.inference["timesteps"])
    slices = torch.rand(args.slices, 1, size, size)
    wall, cpu = reconstruction_seconds(engine, slices, args.repeats)
    print(f"shipped {card.name}: {args.slices} slices x {timesteps} passes at {size} px: {wall:.2f} s "
          f"(CPU {cpu:.2f} s), {wall / args.slices * 1000:.0f} ms per slice")
    per_slice = wall / args.slices

    torch.manual_seed(0)
    reference_network = {**card.network, "unet": {**card.network.get("unet", {}), **REFERENCE_UNET},
                         "encoder": {**card.network.get("encoder", {}), **REFERENCE_ENCODER}}
    reference = ContrastiveDiffusionEngine(build_unet(reference_network["unet"]),
                                           build_encoder(reference_network["encoder"]), reference_network,
                                           engine.inference)
    ref_slices = slices[: args.reference_slices]
    ref_wall, ref_cpu = reconstruction_seconds(reference, ref_slices, max(1, args.repeats - 2))
    ref_per_slice = ref_wall / len(ref_slices)
    parameters = {name: sum(p.numel() for p in e.unet.parameters()) + sum(p.numel() for p in e.encoder.parameters())
                  for name, e in (("shipped", engine), ("reference", reference))}
    print(f"reference size (UNet 128-256-256 x3 blocks, ResNet-50): {len(ref_slices)} slices x {timesteps} passes "
          f"{ref_wall:.2f} s (CPU {ref_cpu:.2f} s), {ref_per_slice * 1000:.0f} ms per slice, "
          f"about {ref_per_slice * args.slices:.0f} s for {args.slices} slices")
    print(f"ratio reference / shipped: {ref_per_slice / per_slice:.1f}x time, "
          f"{parameters['reference'] / parameters['shipped']:.1f}x parameters "
          f"({parameters['reference'] / 1e6:.1f} M vs {parameters['shipped'] / 1e6:.2f} M)")

    train_throughput(engine, card, args.train_batch, args.repeats)


def train_throughput(engine, card, batch: int, repeats: int) -> None:
    """Slices per second of one diffusion training step (UNet and encoder both trained)."""
    import torch
    from UADContrastiveLib.engines.contrastive_diffusion.diffusion import add_noise, to_model

    size = card.model_grid.size[0]
    unet, encoder = engine.unet.train(), engine.encoder.train()
    optimizer = torch.optim.AdamW([*unet.parameters(), *encoder.parameters()], lr=1e-4)
    x0 = to_model(torch.rand(batch, 1, size, size))

    def step():
        t = torch.randint(0, 1000, (batch,))
        x_t = add_noise(engine.scheduler, x0, torch.randn_like(x0), t)
        loss = (unet(x_t, t, encoder(x0)) - x0).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    wall, cpu = timed(step, repeats)
    print(f"training step, batch {batch} at {size} px: {wall:.2f} s (CPU {cpu:.2f} s), {batch / wall:.1f} slices/s")


if __name__ == "__main__":
    main()
