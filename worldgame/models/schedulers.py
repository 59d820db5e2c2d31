"""The noise schedules: one set of betas for training (DDPM), the teacher's sampler (DDIM) and LCM."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

# Stable-Diffusion betas, the ones LCMScheduler assumes; 50 = LCM's original_inference_steps (k = 20)
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
}
ORIGINAL_INFERENCE_STEPS = 50


def train_scheduler(prediction_type: str) -> DDPMScheduler:
    """The forward process used to noise latents in training."""
    return DDPMScheduler(**SCHEDULE, prediction_type=prediction_type)


def lcm_scheduler(prediction_type: str) -> LCMScheduler:
    """The few-step sampler of the distilled model (same betas as training)."""
    return LCMScheduler(**SCHEDULE, prediction_type=prediction_type, original_inference_steps=ORIGINAL_INFERENCE_STEPS)


def teacher_scheduler(config: dict) -> DDIMScheduler:
    """The teacher's many-step sampler, built from the LCM scheduler's config so the betas match."""
    return DDIMScheduler.from_config(config, set_alpha_to_one=True, timestep_spacing="leading")


def predicted_x0(prediction_type: str, out: torch.Tensor, z: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The clean latent a network output implies at noisy latent ``z`` (ᾱ_t given per sample)."""
    a = alphas_cumprod_t.view(-1, 1, 1, 1)
    if prediction_type == "sample":
        return out
    if prediction_type == "v_prediction":
        return a.sqrt() * z - (1 - a).sqrt() * out
    return (z - (1 - a).sqrt() * out) / a.sqrt()
