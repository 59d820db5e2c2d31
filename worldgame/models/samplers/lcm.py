"""LCM, prepared: diffusers' ``LCMScheduler`` mirrored bit for bit (:class:`LCMPlan`)."""

from __future__ import annotations

import torch
from diffusers import LCMScheduler

from worldgame.models.frame_denoiser import for_frame
from worldgame.models.samplers.base import PreparedSampler, _div, _mul


class LCMPlan(PreparedSampler):
    """LCM sampling, prepared (:class:`PreparedSampler`): the boundary-condition scalings per step,
    and one fresh noise draw per step but the last (LCM re-noises its estimate to the next timestep)."""

    def coefficients(self, scheduler: LCMScheduler, i: int, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        t = ts[i]
        prev = ts[i + 1] if i + 1 < len(ts) else t
        a_t = scheduler.alphas_cumprod[t]
        a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
        c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(t)
        return {"c_skip": c_skip, "c_out": c_out, "sqrt_a": a_t.sqrt(), "sqrt_b": (1 - a_t).sqrt(),
                "sqrt_a_prev": a_prev.sqrt(), "sqrt_b_prev": (1 - a_prev).sqrt()}

    def sample(self, net, context, actions, generator, on_step, out: torch.Tensor) -> torch.Tensor:
        denoise = for_frame(net, self.start(context, generator), actions, self.noise_level)  # features once per frame
        z, noise, tmp = self.latents, self.noise, self.tmp
        last = len(self.timesteps) - 1
        for i, (t, k) in enumerate(zip(self.timesteps, self.coefs)):
            model_out = denoise(z, t)
            x0 = model_out
            if self.prediction_type == "epsilon":  # (z - sqrt(1-a) out) / sqrt(a)
                x0 = _div(torch.sub(z, _mul(k["sqrt_b"], model_out, tmp), out=self.x0), k["sqrt_a"], self.x0)
            elif self.prediction_type == "v_prediction":  # sqrt(a) z - sqrt(1-a) out
                x0 = torch.sub(_mul(k["sqrt_a"], z, self.x0), _mul(k["sqrt_b"], model_out, tmp), out=self.x0)
            torch.add(_mul(k["c_out"], x0, out), _mul(k["c_skip"], z, tmp), out=out)  # c_out x0 + c_skip z
            if on_step is not None:
                on_step(i, out)
            if i < last:  # LCM re-noises the estimate to the next timestep (no noise after the last)
                torch.randn(noise.shape, generator=generator, out=noise)
                torch.add(_mul(k["sqrt_a_prev"], out, z), _mul(k["sqrt_b_prev"], noise, noise), out=z)
        return out
