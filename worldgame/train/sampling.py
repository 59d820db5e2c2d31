"""Sampling with a bare denoiser network during training (WorldModel does the same at play time)."""

from __future__ import annotations

import torch


@torch.no_grad()
def sample(net, scheduler, context: torch.Tensor, actions: torch.Tensor, steps: int, seed: int = 0) -> torch.Tensor:
    """Run ``scheduler`` (LCM or DDIM) for ``steps`` steps with clean context; returns the final estimate."""
    gen = torch.Generator(device=context.device).manual_seed(seed)
    b = context.shape[0]
    scheduler.set_timesteps(steps, device=context.device)
    x = torch.randn((b, *context.shape[2:]), generator=gen, device=context.device)
    level = torch.zeros(b, device=context.device)
    denoised = x
    for t in scheduler.timesteps:
        out = net(x, t.expand(b), context, actions, level)
        x, denoised = scheduler.step(out, t, x, generator=gen, return_dict=False)[:2]
    return denoised
