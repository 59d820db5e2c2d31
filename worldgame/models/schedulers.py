"""The noise schedules: one set of betas for training (DDPM) and for every sampler, the play samplers
(LCM, DDIM, DPM-Solver++ 2M: :func:`play_scheduler`), and :class:`PreparedSampler`, the base of the
samplers a play tick runs with everything computed once (:class:`LCMPlan` here; DDIM and
DPM-Solver++ in sampler_ddim.py and sampler_dpmsolver.py, one algorithm per file)."""

from __future__ import annotations

import warnings

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler

from worldgame.models.frame_denoiser import for_frame

# Stable-Diffusion betas, the ones LCMScheduler assumes; 50 = LCM's original_inference_steps (k = 20)
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
}
ORIGINAL_INFERENCE_STEPS = 50

# The samplers play, bench, eval and serve can run (sampler=): name -> what it is. All but "teacher"
# run the checkpoint's denoiser/ through a prepared plan on the fast (traced / ONNX) path.
SAMPLERS = {
    "lcm": "LCM (consistency; re-noises between steps)",
    "ddim": "DDIM (deterministic)",
    "dpmsolver": "DPM-Solver++ 2M (deterministic, second order)",
    "teacher": "the teacher/ network with DDIM, any step count (the slow reference; torch only)",
}
SAMPLER_LABELS = {"lcm": "LCM", "ddim": "DDIM", "dpmsolver": "DPM++ 2M", "teacher": "teacher DDIM"}  # HUD, page
SPACINGS = ("leading", "trailing", "linspace")  # diffusers' timestep_spacing (ddim, dpmsolver, teacher)
DEFAULT_SPACING = {"ddim": "leading", "dpmsolver": "trailing", "teacher": "leading"}


def set_timesteps(scheduler, steps: int, device: torch.device | str | None = None) -> None:
    """``scheduler.set_timesteps``, without the DeprecationWarning diffusers' DPM-Solver raises on every
    call under numpy 2 (``np.array`` of a tensor: harmless, and ~400 lines at the end of a test run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        scheduler.set_timesteps(steps, device=device)


def train_scheduler(prediction_type: str) -> DDPMScheduler:
    """The forward process used to noise latents in training."""
    return DDPMScheduler(**SCHEDULE, prediction_type=prediction_type)


def lcm_scheduler(prediction_type: str) -> LCMScheduler:
    """The few-step sampler of the distilled model (same betas as training)."""
    return LCMScheduler(**SCHEDULE, prediction_type=prediction_type, original_inference_steps=ORIGINAL_INFERENCE_STEPS)


def teacher_scheduler(config: dict, spacing: str = "leading") -> DDIMScheduler:
    """The teacher's many-step sampler, built from the LCM scheduler's config so the betas match."""
    return DDIMScheduler.from_config(config, set_alpha_to_one=True, timestep_spacing=spacing)


def play_scheduler(name: str, spacing: str | None, prediction_type: str):
    """The diffusers scheduler a sampler name stands for (the same betas as training): the
    reference each prepared plan mirrors bit for bit. ``spacing`` None = the sampler's default."""
    base = lcm_scheduler(prediction_type)
    if name == "lcm":
        return base
    spacing = spacing or DEFAULT_SPACING[name]
    if name == "dpmsolver":  # the 2M solver (midpoint); lower order at the last steps, final sigma 0
        return DPMSolverMultistepScheduler.from_config(base.config, algorithm_type="dpmsolver++", solver_order=2,
                                                       timestep_spacing=spacing)
    return teacher_scheduler(base.config, spacing)  # ddim and teacher: DDIM, eta 0


def make_plan(name: str, scheduler, steps: int, context: torch.Tensor, context_noise: float) -> PreparedSampler:
    """The prepared sampler of ``name`` ("lcm", "ddim", "dpmsolver") for one step count and shape."""
    if name == "lcm":
        return LCMPlan(scheduler, steps, context, context_noise)
    if name == "ddim":
        from worldgame.models.sampler_ddim import DDIMPlan

        return DDIMPlan(scheduler, steps, context, context_noise)
    if name == "dpmsolver":
        from worldgame.models.sampler_dpmsolver import DPMSolverPlan

        return DPMSolverPlan(scheduler, steps, context, context_noise)
    raise ValueError(f"no prepared plan for sampler {name!r}")


def predicted_x0(prediction_type: str, out: torch.Tensor, z: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The clean latent a network output implies at noisy latent ``z`` (ᾱ_t given per sample)."""
    a = alphas_cumprod_t.view(-1, 1, 1, 1)
    if prediction_type == "sample":
        return out
    if prediction_type == "v_prediction":
        return a.sqrt() * z - (1 - a).sqrt() * out
    return (z - (1 - a).sqrt() * out) / a.sqrt()


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


def _mul(k: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``k * x`` for a 0-d float32 coefficient ``k``, written into ``out`` (may be ``x``). In float32
    that is exactly the scheduler's product; in half precision ``mul(out=)`` rounds ``k`` to half
    first where ``k * x`` does not, so there the product is allocated as the scheduler does."""
    return torch.mul(x, k, out=out) if x.dtype == torch.float32 else k * x


def _div(x: torch.Tensor, k: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``x / k`` for a 0-d float32 coefficient ``k`` (written into ``out`` in float32; as :func:`_mul`)."""
    return torch.div(x, k, out=out) if x.dtype == torch.float32 else x / k
