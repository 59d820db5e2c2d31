"""The noise schedules: one set of betas for training (DDPM), the teacher's sampler (DDIM) and LCM,
and :class:`LCMPlan`, the LCM sampler with everything a play tick needs computed once."""

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


class LCMPlan:
    """LCM sampling for one step count and one input shape, prepared once (StreamDiffusion's
    ``prepare()``): the timesteps, the scheduler's per-step coefficients as tensors, the noise-level
    tensor and the buffers the noise is drawn into. A tick is then a few tensor ops, with no
    scheduler call and (in float32) no allocation besides the network's own.

    Bit-identical to ``LCMScheduler.set_timesteps`` + ``step`` (what ``WorldModel._sample`` runs,
    and what sessions were recorded with): the coefficients are the very 0-d tensors ``step``
    computes (same expressions, dtype and device), every product and sum is the same elementwise
    op with the same operands (only written into a buffer; see :func:`_mul` for half precision),
    and the noise is drawn from the same generator in the same order and shape (``randn(out=)``
    is ``randn``): context noise, the start latent, then one draw per step but the last.
    tests/test_backends.py checks the equality (float32 and float16, every prediction type).
    """

    def __init__(self, scheduler: LCMScheduler, steps: int, context: torch.Tensor, context_noise: float) -> None:
        cfg = scheduler.config
        if cfg.thresholding or cfg.clip_sample:
            raise ValueError("LCMPlan does not implement thresholding or clip_sample (the project's schedule uses neither)")
        b, _, c, h, w = context.shape
        dd = {"device": context.device, "dtype": context.dtype}
        self.prediction_type = cfg.prediction_type
        self.context_noise = context_noise
        scheduler.set_timesteps(steps, device=context.device)
        ts = scheduler.timesteps
        self.timestep_values = [int(t) for t in ts]
        self.timesteps = [t.expand(b) for t in ts]  # the (B,) view the per-tick loop passed the network
        self.coefs = []  # per step: the 0-d tensors LCMScheduler.step derives from it, in its own words
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else t
            a_t = scheduler.alphas_cumprod[t]
            a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
            c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(t)
            self.coefs.append({
                "c_skip": c_skip, "c_out": c_out, "sqrt_a": a_t.sqrt(), "sqrt_b": (1 - a_t).sqrt(),
                "sqrt_a_prev": a_prev.sqrt(), "sqrt_b_prev": (1 - a_prev).sqrt(),
            })
        self.noise_level = torch.full((b,), context_noise, **dd)
        self.context = torch.empty_like(context) if context_noise > 0 else None
        self.latents = torch.empty(b, c, h, w, **dd)
        self.noise = torch.empty_like(self.latents)
        self.x0 = torch.empty_like(self.latents)
        self.tmp = torch.empty_like(self.latents)

    def sample(self, net, context, actions, generator, on_step, out: torch.Tensor) -> torch.Tensor:
        """Run the sampler with ``net`` (the denoiser's signature); the result is written to ``out``.
        ``on_step(i, out)`` sees the denoised estimate after step i (valid until the next step)."""
        if self.context is not None:
            noisy = self.context
            torch.randn(noisy.shape, generator=generator, out=noisy)
            torch.mul(noisy, self.context_noise, out=noisy)  # a Python float, as in `context_noise * randn`
            context = torch.add(context, noisy, out=noisy)
        z, noise, tmp = self.latents, self.noise, self.tmp
        torch.randn(z.shape, generator=generator, out=z)
        last = len(self.timesteps) - 1
        for i, (t, k) in enumerate(zip(self.timesteps, self.coefs)):
            model_out = net(z, t, context, actions, self.noise_level)
            x0 = model_out
            if self.prediction_type == "epsilon":  # (z - sqrt(1-a) out) / sqrt(a)
                x0 = torch.sub(z, _mul(k["sqrt_b"], model_out, tmp), out=self.x0)
                x0 = torch.div(x0, k["sqrt_a"], out=x0) if x0.dtype == torch.float32 else x0 / k["sqrt_a"]  # as _mul
            elif self.prediction_type == "v_prediction":  # sqrt(a) z - sqrt(1-a) out
                x0 = torch.sub(_mul(k["sqrt_a"], z, self.x0), _mul(k["sqrt_b"], model_out, tmp), out=self.x0)
            torch.add(_mul(k["c_out"], x0, out), _mul(k["c_skip"], z, tmp), out=out)  # c_out x0 + c_skip z
            if on_step is not None:
                on_step(i, out)
            if i < last:  # LCM re-noises the estimate to the next timestep (no noise after the last)
                torch.randn(noise.shape, generator=generator, out=noise)
                torch.add(_mul(k["sqrt_a_prev"], out, z), _mul(k["sqrt_b_prev"], noise, noise), out=z)
        return out


def _mul(k: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``k * x`` for a 0-d float32 coefficient ``k``, written into ``out`` (may be ``x``). In float32
    that is exactly the scheduler's product; in half precision ``mul(out=)`` rounds ``k`` to half
    first where ``k * x`` does not, so there the product is allocated as the scheduler does."""
    return torch.mul(x, k, out=out) if x.dtype == torch.float32 else k * x
