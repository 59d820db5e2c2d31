"""DDIM (eta = 0), prepared: the deterministic sampler of diffusers' ``DDIMScheduler``, mirrored bit
for bit (any ``timestep_spacing``). Only the context noise and the start latent are drawn; after
that a frame is a function of its context, so a respawn is whatever the network's estimate says.

One step at timestep t, previous timestep t' = t - 1000 // steps (ᾱ' = 1 below 0)::

    x0  = the network's clean estimate (converted from epsilon / v where it predicts those)
    eps = (z - √ᾱ x0) / √(1-ᾱ)
    z'  = √ᾱ' x0 + √(1-ᾱ'-σ²) eps        (σ = 0 for eta 0; computed as diffusers does anyway)

The result is the last step's x0 (what ``scheduler_sample`` returns: the pred_original_sample).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from worldgame.models.frame_denoiser import for_frame
from worldgame.models.samplers.base import PreparedSampler, _div, _mul


class DDIMPlan(PreparedSampler):
    """DDIM with eta 0 for one step count and input shape (see :class:`PreparedSampler`)."""

    def coefficients(self, scheduler: DDIMScheduler, i: int, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        t = ts[i]  # DDIMScheduler.step's own expressions, step by step
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        a_t = scheduler.alphas_cumprod[t]
        a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        b_t = 1 - a_t
        std_dev_t = 0.0 * scheduler._get_variance(t, prev_t) ** (0.5)  # eta = 0
        return {"sqrt_a": a_t ** (0.5), "sqrt_b": b_t ** (0.5), "sqrt_a_prev": a_prev ** (0.5),
                "direction": (1 - a_prev - std_dev_t**2) ** (0.5)}

    def sample(self, net, context, actions, generator, on_step, out: torch.Tensor) -> torch.Tensor:
        denoise = for_frame(net, self.start(context, generator), actions, self.noise_level)  # features once per frame
        z, eps, tmp = self.latents, self.noise, self.tmp  # `noise` holds eps: DDIM draws none after the start
        last = len(self.timesteps) - 1
        for i, (t, k) in enumerate(zip(self.timesteps, self.coefs)):
            model_out = denoise(z, t)
            if self.prediction_type == "sample":  # x0 = out; eps = (z - √ᾱ x0) / √(1-ᾱ)
                x0 = out.copy_(model_out)  # the network's output may be a buffer its next call reuses
                if i < last:
                    eps.copy_(_div(torch.sub(z, _mul(k["sqrt_a"], x0, tmp), out=eps), k["sqrt_b"], eps))
            elif self.prediction_type == "epsilon":  # x0 = (z - √(1-ᾱ) out) / √ᾱ; eps = out
                x0 = torch.sub(z, _mul(k["sqrt_b"], model_out, tmp), out=out)
                x0 = out.copy_(_div(x0, k["sqrt_a"], out))
                eps.copy_(model_out)
            else:  # v: x0 = √ᾱ z - √(1-ᾱ) out; eps = √ᾱ out + √(1-ᾱ) z
                x0 = torch.sub(_mul(k["sqrt_a"], z, self.x0), _mul(k["sqrt_b"], model_out, tmp), out=out)
                torch.add(_mul(k["sqrt_a"], model_out, self.x0), _mul(k["sqrt_b"], z, tmp), out=eps)
            if on_step is not None:
                on_step(i, out)
            if i < last:  # z' = √ᾱ' x0 + √(1-ᾱ'-σ²) eps (the last step's z' is not used: x0 is the result)
                torch.add(_mul(k["sqrt_a_prev"], x0, z), _mul(k["direction"], eps, tmp), out=z)
        return out
