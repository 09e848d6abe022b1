"""Latent DDPM inference (Pinaya et al. 2022): heal only the latent cells that changed most.

For a batch of slices, z = encode(x) (posterior mean, standardised):
  1. noise z to step `t_start` and denoise it with `steps` deterministic DDIM steps -> z1;
     a healthy model moves anomalous cells much more than healthy ones;
  2. mask = mean over channels of |z - z1| > `change_threshold`, inside the brain (the
     threshold is the `change_quantile` of that change on healthy validation latents,
     measured when training ends);
  3. heal: the same partial noising and DDIM denoising again, but after every step the cells
     outside the mask are set back to the input latent at that step's noise level
     (inpainting), so the healed cells fit their healthy surroundings; the final latent is
     the healed one in the mask and exactly z elsewhere (`inpaint: false` takes z1 in the mask);
  4. decode; the healthy slice is the decoded healed slice inside the mask upsampled to the
     slice grid and the input everywhere else, so residual = input - healthy is zero outside
     the mask and the map is |input - healed| in it, as in the paper.
Noise comes from the engine's seeded generator (reproducible detections).
"""
from __future__ import annotations

import torch

from ..diffusion_common import add_noise, ddim_step, step_schedule
from ..latent_autoencoder.engine import LatentEngine
from .network import DEFAULT_SCHEDULE, build_denoiser

DEFAULT_INFERENCE = {
    "t_start": 300,            # of 1000: where the partial noising stops
    "steps": 10,               # DDIM steps from t_start to x0 (each pass)
    "change_threshold": 0.5,   # replaced at the end of training by the healthy quantile below
    "change_quantile": 0.95,
    "inpaint": True,
    "batch_size": 32,
    "brain_cell_fraction": 0.5,
    "seed": 0,
}


class LatentDdpmEngine(LatentEngine):
    name = "latent_ddpm"
    default_inference = DEFAULT_INFERENCE

    denoiser_factory = staticmethod(build_denoiser)
    default_schedule = DEFAULT_SCHEDULE

    def denoise(self, z: torch.Tensor, generator: torch.Generator, keep: torch.Tensor | None = None) -> torch.Tensor:
        """z noised to t_start and denoised by DDIM; with `keep` (B,1,h,w) bool, the cells
        outside `keep` follow z's own noising path at every step (inpainting of `keep`)."""
        t_start = int(self.inference["t_start"])
        if not 0 < t_start < self.scheduler.num_train_timesteps:
            raise ValueError(f"t_start {t_start} must lie in (0, {self.scheduler.num_train_timesteps})")
        noise = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        current = add_noise(self.scheduler, z, noise, torch.full((len(z),), t_start, device=z.device))
        for t, t_prev in step_schedule(t_start, int(self.inference["steps"])):
            x0 = self.denoiser(current, torch.full((len(z),), t, device=z.device, dtype=torch.long)).float()
            current = ddim_step(self.scheduler, current, x0, t, t_prev)
            if keep is not None and t_prev >= 0:
                known = add_noise(self.scheduler, z, noise, torch.full((len(z),), t_prev, device=z.device))
                current = torch.where(keep, current, known)
        return current

    def change_map(self, z: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(|z - denoised z| averaged over channels (B,1,h,w), denoised z)."""
        denoised = self.denoise(z, generator)
        return (z - denoised).abs().mean(1, keepdim=True), denoised

    def heal_latent(self, z: torch.Tensor, cells: torch.Tensor, generator: torch.Generator):
        """(healed latent: z outside the mask, mask (B,1,h,w) bool of the healed cells)."""
        change, denoised = self.change_map(z, generator)
        mask = (change > float(self.inference["change_threshold"])) & cells
        if not mask.any():
            return z, mask
        healed = self.denoise(z, generator, keep=mask) if self.inference.get("inpaint", True) else denoised
        return torch.where(mask, healed, z), mask

    def heal_slices(self, slices, brains, generator):
        z, _ = self.codec.encode(slices)
        z = z.float()
        healed, mask = self.heal_latent(z, self.cells(brains), generator)
        healthy = slices.clone()
        rows = mask.flatten(1).any(1)
        if rows.any():
            factor = self.codec.downsampling
            inside = mask[rows].repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
            decoded = self.codec.decode(healed[rows]).float()
            healthy[rows] = torch.where(inside, decoded, slices[rows])
        return healthy
