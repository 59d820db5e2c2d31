"""DPM-Solver++ 2M, prepared: diffusers' ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``,
``solver_order=2``, midpoint, final sigma 0) mirrored bit for bit. Deterministic: only the context
noise and the start latent are drawn.

In the solver's own variables (α_t = 1/√(σ²+1), σ_t = σ α_t, λ = log α_t - log σ_t, h = λ_t - λ_s),
with x0 the network's clean estimate at step i and x0' the previous step's::

    first order (the first step, and the last: lower_order_final):
        z' = (σ_t/σ_s) z - α_t (e^{-h} - 1) x0
    second order (every other step):
        D1 = (1/r0) (x0 - x0'),  r0 = h_0 / h
        z' = (σ_t/σ_s0) z - α_t (e^{-h} - 1) x0 - ½ α_t (e^{-h} - 1) D1

The update is computed in float32 (the scheduler upcasts the latent) and cast back to the model's
dtype; the result is the last step's z' (with the final sigma 0 that is x0).
"""

from __future__ import annotations

import torch
from diffusers import DPMSolverMultistepScheduler

from worldgame.models.frame_denoiser import for_frame
from worldgame.models.samplers.base import PreparedSampler, _div, _mul


class DPMSolverPlan(PreparedSampler):
    """DPM-Solver++ 2M for one step count and input shape (see :class:`PreparedSampler`)."""

    def __init__(self, scheduler: DPMSolverMultistepScheduler, steps: int, context: torch.Tensor, context_noise: float) -> None:
        cfg = scheduler.config
        if (cfg.algorithm_type, cfg.solver_order, cfg.solver_type, cfg.final_sigmas_type) != ("dpmsolver++", 2, "midpoint", "zero") \
                or cfg.use_karras_sigmas or cfg.use_lu_lambdas or cfg.use_exponential_sigmas or cfg.use_beta_sigmas \
                or cfg.use_flow_sigmas or cfg.variance_type is not None:
            raise ValueError("DPMSolverPlan mirrors dpmsolver++ order 2 (midpoint, final sigma 0, plain sigmas) only")
        super().__init__(scheduler, steps, context, context_noise)
        self.previous = torch.empty_like(self.latents)  # x0' (the last step's converted model output)
        self.wide = torch.empty_like(self.latents, dtype=torch.float32) if context.dtype != torch.float32 else None

    def coefficients(self, scheduler: DPMSolverMultistepScheduler, i: int, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        sigmas, last = scheduler.sigmas, len(ts) - 1
        k: dict[str, torch.Tensor] = {}
        if self.prediction_type != "sample":  # convert_model_output: sigma of this step
            k["alpha_i"], k["sigma_i"] = _alpha_sigma(sigmas[i])
        alpha_t, sigma_t = _alpha_sigma(sigmas[i + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(sigmas[i])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        k["scale"] = sigma_t / sigma_s0
        k["x0"] = alpha_t * (torch.exp(-h) - 1.0)
        if 0 < i < last:  # second order (lower_order_final keeps the last step first order)
            alpha_s1, sigma_s1 = _alpha_sigma(sigmas[i - 1])
            lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
            r0 = (lambda_s0 - lambda_s1) / h
            k["d1"] = 1.0 / r0
            k["half_x0"] = 0.5 * (alpha_t * (torch.exp(-h) - 1.0))
        return k

    def sample(self, net, context, actions, generator, on_step, out: torch.Tensor) -> torch.Tensor:
        denoise = for_frame(net, self.start(context, generator), actions, self.noise_level)  # features once per frame
        z, tmp, d1, previous = self.latents, self.tmp, self.noise, self.previous  # `noise` holds D1: no draws
        for i, (t, k) in enumerate(zip(self.timesteps, self.coefs)):
            model_out = denoise(z, t)
            if self.prediction_type == "sample":
                x0 = self.x0.copy_(model_out)  # the network's output may be a buffer its next call reuses
            elif self.prediction_type == "epsilon":  # (z - σ_i out) / α_i
                x0 = _div(torch.sub(z, _mul(k["sigma_i"], model_out, tmp), out=self.x0), k["alpha_i"], self.x0)
            else:  # v: α_i z - σ_i out
                x0 = torch.sub(_mul(k["alpha_i"], z, self.x0), _mul(k["sigma_i"], model_out, tmp), out=self.x0)
            x0 = x0 if x0 is self.x0 else self.x0.copy_(x0)
            if on_step is not None:
                on_step(i, out.copy_(x0))  # the view shows the clean estimate of each step
            if "d1" in k:  # D1 = (1/r0)(x0 - x0'), in the model's dtype
                d1 = _mul(k["d1"], torch.sub(x0, previous, out=self.noise), self.noise)
            if self.wide is None:  # float32: in place
                torch.sub(_mul(k["scale"], z, z), _mul(k["x0"], x0, tmp), out=z)
                if "d1" in k:
                    torch.sub(z, _mul(k["half_x0"], d1, d1), out=z)
            else:  # half: the scheduler's float32 update, then cast back
                wide = torch.sub(k["scale"] * self.wide.copy_(z), k["x0"] * x0)
                if "d1" in k:
                    wide = wide - k["half_x0"] * d1
                z.copy_(wide)
            previous.copy_(x0)
        return out.copy_(z)


def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DPMSolverMultistepScheduler._sigma_to_alpha_sigma_t (plain sigmas)."""
    alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha_t, sigma * alpha_t
