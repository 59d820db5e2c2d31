"""The noise schedules: one set of betas for training (DDPM) and for every sampler, and the diffusers
schedulers of the play samplers (LCM, DDIM, DPM-Solver++ 2M: :func:`play_scheduler`). The prepared
samplers a play tick runs mirror them: the base and its helpers in samplers/base.py, one algorithm
per file (samplers/lcm.py, ddim.py, dpmsolver.py), their registry in samplers/__init__.py."""

from __future__ import annotations

import warnings

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler

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


def predicted_x0(prediction_type: str, out: torch.Tensor, z: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The clean latent a network output implies at noisy latent ``z`` (ᾱ_t given per sample)."""
    a = alphas_cumprod_t.view(-1, 1, 1, 1)
    if prediction_type == "sample":
        return out
    if prediction_type == "v_prediction":
        return a.sqrt() * z - (1 - a).sqrt() * out
    return (z - (1 - a).sqrt() * out) / a.sqrt()
