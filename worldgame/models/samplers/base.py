"""The base of the prepared samplers (:class:`PreparedSampler`) and the helpers every algorithm's
file shares (:func:`_mul`, :func:`_div`): LCM, DDIM and DPM-Solver++ are in lcm.py,
ddim.py and dpmsolver.py beside it, one algorithm per file; __init__.py names them."""

from __future__ import annotations

import torch

from worldgame.models.schedulers import set_timesteps


class PreparedSampler:
    """A sampler for one step count and one input shape, prepared once (StreamDiffusion's
    ``prepare()``): the timesteps, the scheduler's per-step coefficients as tensors (:meth:`coefficients`),
    the noise-level tensor and the buffers. A tick (:meth:`sample`) is then a few tensor ops, with no
    scheduler call and (in float32) no allocation besides the network's own.

    Every plan is bit-identical to ``scheduler.set_timesteps`` + ``step`` as
    :func:`worldgame.models.world_model.scheduler_sample` runs them (what sessions were recorded
    with): the coefficients are the very 0-d tensors ``step`` computes (same expressions, dtype and
    device), every product and sum is the same elementwise op with the same operands (only written
    into a buffer; see :func:`_mul` for half precision), and noise is drawn from the same generator in
    the same order and shape (``randn(out=)`` is ``randn``): context noise, the start latent, then
    whatever the sampler's steps draw. tests/test_backends.py and tests/test_samplers.py check it.
    """

    def __init__(self, scheduler, steps: int, context: torch.Tensor, context_noise: float) -> None:
        cfg = scheduler.config
        if cfg.get("thresholding") or cfg.get("clip_sample"):
            raise ValueError(f"{type(self).__name__} does not implement thresholding or clip_sample "
                             "(the project's schedule uses neither)")
        b, _, c, h, w = context.shape
        dd = {"device": context.device, "dtype": context.dtype}
        self.prediction_type = cfg.prediction_type
        self.context_noise = context_noise
        set_timesteps(scheduler, steps, context.device)
        ts = scheduler.timesteps
        self.timestep_values = [int(t) for t in ts]
        self.timesteps = [t.expand(b) for t in ts]  # the (B,) view the per-tick loop passed the network
        self.coefs = [self.coefficients(scheduler, i, ts) for i in range(len(ts))]
        self.noise_level = torch.full((b,), context_noise, **dd)
        # contiguous whatever the caller's layout: randn(out=) fills memory in order, so a buffer with
        # the strides of a permuted context would place the noise elsewhere than randn(shape) does
        self.context = torch.empty(context.shape, **dd) if context_noise > 0 else None
        self.latents = torch.empty(b, c, h, w, **dd)
        self.noise = torch.empty_like(self.latents)
        self.x0 = torch.empty_like(self.latents)
        self.tmp = torch.empty_like(self.latents)

    def coefficients(self, scheduler, i: int, timesteps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The 0-d tensors step ``i`` of ``scheduler.step`` derives, computed as it computes them."""
        raise NotImplementedError

    def start(self, context: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Draw the context noise and the start latent (into ``self.latents``); the context to use."""
        if self.context is not None:
            noisy = self.context
            torch.randn(noisy.shape, generator=generator, out=noisy)
            torch.mul(noisy, self.context_noise, out=noisy)  # a Python float, as in `context_noise * randn`
            context = torch.add(context, noisy, out=noisy)
        torch.randn(self.latents.shape, generator=generator, out=self.latents)
        return context

    def sample(self, net, context, actions, generator, on_step, out: torch.Tensor) -> torch.Tensor:
        """Run the sampler with ``net`` (the denoiser's signature); the result is written to ``out``.
        ``on_step(i, out)`` sees the denoised estimate after step i (valid until the next step)."""
        raise NotImplementedError


def _mul(k: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``k * x`` for a 0-d float32 coefficient ``k``, written into ``out`` (may be ``x``). In float32
    that is exactly the scheduler's product; in half precision ``mul(out=)`` rounds ``k`` to half
    first where ``k * x`` does not, so there the product is allocated as the scheduler does."""
    return torch.mul(x, k, out=out) if x.dtype == torch.float32 else k * x


def _div(x: torch.Tensor, k: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``x / k`` for a 0-d float32 coefficient ``k`` (written into ``out`` in float32; as :func:`_mul`)."""
    return torch.div(x, k, out=out) if x.dtype == torch.float32 else x / k
