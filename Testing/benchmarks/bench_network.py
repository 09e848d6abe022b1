"""The network side of detection: model-load time (fresh processes, as `uadc detect` loads it),
and the shipped network beside the reference method's network size, measured in the same
process and counted in FLOPs, so the ratio holds under any load. Prints two tables; no pass/fail.
Training throughput: bench_training_throughput.py.

    python Testing/benchmarks/bench_network.py [--model NAME|PATH] [--slices 50] [--reference-slices 8]

Reference size (Patricio et al. 2025): MONAI DiffusionModelUNet 128-256-256, 3 residual blocks
per level, ResNet-50 encoder, at the shipped model's 96 px and its passes (timesteps). It is
timed on --reference-slices slices (one batch, every timestep) and scaled to --slices, because
the full run takes minutes; pass --reference-slices 50 for all. FLOPs are counted by
torch.utils.flop_counter (convolutions and matrix products: the arithmetic, not norms or
activations) on two slices and scaled; they do not depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODE = REPO / "UADContrastive"
sys.path.insert(0, str(CODE))

REFERENCE_UNET = {"channels": [128, 256, 256], "num_res_blocks": 3, "norm_num_groups": 32,
                  "attention_levels": [False, False, False], "latent_dim": 128}
REFERENCE_ENCODER = {"block": "bottleneck", "layers": [3, 4, 6, 3], "block_inplanes": [64, 128, 256, 512]}

# What `uadc detect`'s model-load thread does (detection.detector._load_engine), phase by phase.
LOAD_PROBE = """
import json, sys, time
start = time.perf_counter()
from UADContrastiveLib.engines import engine_class, load_engine, resolve_device
from UADContrastiveLib.lean_imports import import_lean
from UADContrastiveLib.zoo import ModelCard, resolve_model
device = resolve_device("cpu")
torch_done = time.perf_counter()
model_dir = resolve_model(sys.argv[1] or None)
engine = ModelCard.read(model_dir).engine
import_lean(lambda: engine_class(engine)) if sys.argv[2] == "lean" else engine_class(engine)
code_done = time.perf_counter()
load_engine(model_dir, device)
end = time.perf_counter()
print(json.dumps({"import torch": torch_done - start, "import the engine (MONAI)": code_done - torch_done,
                  "checksums, build, weights": end - code_done, "total": end - start}))
"""


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


def model_load(model: str | None, lean: bool, repeats: int) -> dict:
    """Median phase seconds of loading the model in a fresh interpreter (after one warm-up)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(CODE), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-c", LOAD_PROBE, model or "", "lean" if lean else "full"]
    runs = [json.loads(subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout)
            for _ in range(repeats + 1)][1:]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def flops_per_volume(engine, size: int, slices: int) -> float:
    """FLOPs of one volume's reconstruction (encoder + every pass), counted on 2 slices, scaled."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        engine.reconstruct_slices(torch.rand(2, 1, size, size), torch.Generator().manual_seed(0))
    return counter.get_total_flops() / 2 * slices


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--slices", type=int, default=50, help="brain slices of one volume")
    parser.add_argument("--reference-slices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f} at the start; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    loads = {"as uadc detect (lean MONAI import)": model_load(args.model, True, args.repeats),
             "full MONAI import": model_load(args.model, False, args.repeats)}
    phases = list(next(iter(loads.values())))
    print_table(f"Model load in a fresh process, median of {args.repeats} (s, wall)", ["", *phases],
                [[name, *(f"{figures[p]:.2f}" for p in phases)] for name, figures in loads.items()])

    import torch
    from UADContrastiveLib.engines import load_engine
    from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
    from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder
    from UADContrastiveLib.engines.contrastive_diffusion.engine import ContrastiveDiffusionEngine
    from UADContrastiveLib.zoo import ModelCard, resolve_model

    model_dir = resolve_model(args.model)
    card = ModelCard.read(model_dir)
    engine = load_engine(model_dir, "cpu")
    size = card.model_grid.size[0]
    passes = len(engine.inference["timesteps"])
    slices = torch.rand(args.slices, 1, size, size)

    def reconstruction(e, batch):
        return lambda: e.reconstruct_slices(batch, torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    reference_network = {**card.network, "unet": {**card.network.get("unet", {}), **REFERENCE_UNET},
                         "encoder": {**card.network.get("encoder", {}), **REFERENCE_ENCODER}}
    reference = ContrastiveDiffusionEngine(build_unet(reference_network["unet"]),
                                           build_encoder(reference_network["encoder"]), reference_network,
                                           engine.inference)
    for module in (reference.unet, reference.encoder):  # the CPU layout the shipped engine loads with
        module.to(memory_format=torch.channels_last)
    figures = {}
    for name, e, batch, repeats in (("shipped", engine, slices, args.repeats),
                                    ("reference", reference, slices[: args.reference_slices], max(1, args.repeats - 2))):
        wall, cpu = timed(reconstruction(e, batch), repeats)
        scale = args.slices / len(batch)
        figures[name] = {"parameters": sum(p.numel() for m in (e.unet, e.encoder) for p in m.parameters()),
                         "flops": flops_per_volume(e, size, args.slices), "wall": wall * scale, "cpu": cpu * scale,
                         "timed on": len(batch)}
    shipped, ref = figures["shipped"], figures["reference"]
    unet = card.network.get("unet", {})
    rows = [["network", f"UNet {'-'.join(map(str, unet.get('channels', [])))} x{unet.get('num_res_blocks')}, "
                        f"ResNet {card.network.get('encoder', {}).get('layers')}",
             "UNet 128-256-256 x3, ResNet-50", ""],
            ["parameters (M)", f"{shipped['parameters'] / 1e6:.2f}", f"{ref['parameters'] / 1e6:.1f}",
             f"{ref['parameters'] / shipped['parameters']:.1f}x"],
            [f"GFLOP per volume ({args.slices} slices x {passes} passes)", f"{shipped['flops'] / 1e9:.1f}",
             f"{ref['flops'] / 1e9:.0f}", f"**{ref['flops'] / shipped['flops']:.1f}x**"],
            ["s per volume (wall)", f"{shipped['wall']:.2f}", f"{ref['wall']:.1f}", f"{ref['wall'] / shipped['wall']:.1f}x"],
            ["CPU s per volume", f"{shipped['cpu']:.2f}", f"{ref['cpu']:.1f}", f"{ref['cpu'] / shipped['cpu']:.1f}x"],
            ["slices timed (scaled to the volume)", str(shipped["timed on"]), str(ref["timed on"]), ""]]
    print_table(f"Reconstruction of one volume at {size} px, {card.name}, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads, fp32, channels-last",
                ["", "shipped", "reference size", "reference / shipped"], rows)


if __name__ == "__main__":
    main()
