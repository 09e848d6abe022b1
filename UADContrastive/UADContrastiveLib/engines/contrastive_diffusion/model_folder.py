"""The trained model folder (training.model_folder: weight files, then the card), from the end
of training or from a checkpoint."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...training.loop import checkpoint_path, hardware, load_checkpoint
from ...training.model_folder import save_weights, write_card
from ...training.slice_cache import validation_slices
from .diffusion import build_unet
from .engine import DEFAULT_INFERENCE, ENCODER_FILE, UNET_FILE, ContrastiveDiffusionEngine
from .stages import VALIDATION_WHAT, brain_mae, load_pretrained_encoder


def write_model_folder(out_dir: Path, config: dict, result: dict, train_ids: list[str], val_ids: list[str],
                       device: torch.device, wall_seconds: float | None, extra: dict | None = None,
                       cohort: dict | None = None) -> Path:
    """The UNet's (and the encoder's) weights and the card; wall_seconds: this run's wall time."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine: ContrastiveDiffusionEngine = result["engine"]
    files = [UNET_FILE]
    save_weights(engine.unet, out_dir / UNET_FILE)
    if engine.encoder is not None:
        save_weights(engine.encoder, out_dir / ENCODER_FILE)
        files.append(ENCODER_FILE)
    elif (out_dir / ENCODER_FILE).exists():
        (out_dir / ENCODER_FILE).unlink()
    cohort = cohort or {}
    modality = str(cohort.get("modality") or config.get("modality") or "T1")
    training = {
        "subjects": {**cohort.get("subjects", {}), "train": train_ids, "validation": val_ids},
        "processes": result.get("world_size", 1),
        "encoder": result.get("encoder_summary"),
        "diffusion": {"steps": result["steps"], "minutes": result["minutes"], "batch_size": result["batch_size"],
                      "final_train_l1": result["final_train_loss"], "history": result["history"]},
        "config": {k: v for k, v in config.items() if k != "subjects"},
    }
    write_card(out_dir, engine="contrastive_diffusion", config=config, files=files, cohort=cohort, training=training,
               network=result["network"], inference=result["inference"],
               extra={"description": describe(result["network"].get("conditioned", True), modality),
                      "validation": result["validation"], **(extra or {})},
               slice_min_brain_fraction=config["min_slice_fraction"], hardware=hardware(device),
               data="IXI T1 (healthy), ../shared/data/ixi_t1", run_seconds=wall_seconds)
    return out_dir


def describe(conditioned: bool, modality: str) -> str:
    """The card's one-line description: the conditioned engine or its unconditioned ablation."""
    method = ("Contrastive-conditioned diffusion (Patricio et al. 2025)" if conditioned else
              "Unconditioned DDPM (the ablation of Patricio et al. 2025: same network and noise, no latent)")
    return (f"{method} trained on healthy {modality} slices; reconstructs a healthy-looking brain, "
            "anomalies appear in |x - reconstruction|.")


def export_checkpoint(config: dict, out_dir: str | Path, train_ids: list[str], val_ids: list[str],
                      validation_slices_count: int = 64, device: str = "cpu") -> Path:
    """Write a model folder from the current diffusion checkpoint (EMA weights) of a run that is
    still going or was interrupted; validation figures on `validation_slices_count` slices."""
    device_ = torch.device(device)
    cfg = config["diffusion"]
    ckpt = checkpoint_path(config, Path(out_dir), "diffusion")
    state = load_checkpoint(ckpt, device_)
    conditioned = bool(cfg.get("conditioned", True))
    encoder = None
    if conditioned:
        encoder, _ = load_pretrained_encoder(config, Path(out_dir), device_)
        trained = state.get("encoder_ema") or state.get("encoder")  # jointly trained: its EMA, as training writes
        if trained is not None:
            encoder.load_state_dict(trained)
    unet_cfg = {**cfg["network"]["unet"], "latent_dim": encoder.latent_dim if conditioned else 0}
    unet = build_unet(unet_cfg)
    unet.load_state_dict(state["ema"])
    network = {"conditioned": conditioned, "unet": unet_cfg, "schedule": cfg["network"].get("schedule"),
               "encoder": config["encoder"]["network"] if conditioned else None}
    inference = {**DEFAULT_INFERENCE, **config.get("inference", {})}
    engine = ContrastiveDiffusionEngine(unet, encoder.eval() if encoder is not None else None, network, inference, device_)
    images, brains = validation_slices(val_ids, config.get("cache_dir"), validation_slices_count,
                                       float(config["min_slice_fraction"]))
    start = time.perf_counter()
    mae = brain_mae(engine, images, brains)
    seconds = time.perf_counter() - start
    losses = state.get("recent_losses") or []
    result = {"network": network, "inference": inference, "history": state.get("history", []),
              "steps": state["step"], "minutes": round(state["elapsed"] / 60, 2),
              "final_train_loss": float(np.mean(losses)) if losses else None,
              "validation": {"brain_mae": round(mae, 5), "slices": len(images),
                             "seconds_per_slice": round(seconds / max(1, len(images)), 4),
                             "what": VALIDATION_WHAT},
              "encoder_summary": state.get("encoder_summary", {}), "batch_size": None,
              "engine": engine, "world_size": None}
    return write_model_folder(Path(out_dir), config, result, train_ids, val_ids, device_, None,
                              {"status": f"exported from a training checkpoint at step {state['step']}"})
