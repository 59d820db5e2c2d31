"""Sampling with a bare denoiser network during training (through the sampling loop inference runs),
and the closed-loop check that validation uses: does a short dream keep the real game's objects?"""

from __future__ import annotations

import torch

from worldgame.engine.fusion import show
from worldgame.eval.metrics import frames_to_unit
from worldgame.eval.objects import foreground_mask, foreground_scores
from worldgame.models.rollout import Rollout, closed_loop, recorded_windows
from worldgame.models.world_model import scheduler_sample, to_frames
from worldgame.train.latents import teacher_forced_psnr


@torch.no_grad()
def sample(net, scheduler, context: torch.Tensor, actions: torch.Tensor, steps: int, seed: int = 0,
           context_noise: float = 0.0, generator: torch.Generator | None = None, draw_code=None) -> torch.Tensor:
    """Run ``scheduler`` (LCM or DDIM) for ``steps`` steps with a bare network; returns the final
    estimate. The loop is inference's own (``world_model.scheduler_sample``), so validation
    dreams exactly as play does (``context_noise`` > 0 noises the context and tells the model so;
    ``draw_code``: a chance prior's drawer, once per frame)."""
    gen = generator if generator is not None else torch.Generator(device=context.device).manual_seed(seed)
    return scheduler_sample(net, scheduler, context, actions, steps, gen, context_noise, draw_code=draw_code)


def _bare_sampler(net, scheduler, steps: int, context_noise: float, generator: torch.Generator, draw_code=None):
    """A rollout's sample function (models/rollout.py) for a bare network in training."""
    def sample_next(context: torch.Tensor, actions: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return sample(net, scheduler, context, actions, steps, context_noise=context_noise, generator=generator,
                      draw_code=draw_code)
    return sample_next


@torch.no_grad()
def own_rollout(net, scheduler, batches, ends: torch.Tensor, n: int, steps: int, context_noise: float,
                generator: torch.Generator, draw_code=None) -> torch.Tensor:
    """The context the model makes for itself at play time: from the real context ``n`` frames
    before each target in ``ends``, dream ``n`` frames with the recorded actions (each sliding into
    the context; the closed-loop rollout play runs). Returns (B, K, C, h, w) on the model's device;
    ``n`` = 0 gives the real context. ``draw_code``: a chance code's, once per dreamed frame, as
    :func:`sample` takes it."""
    k, lat = batches.k, batches.latents
    dev = next(net.parameters()).device
    first = ends - n  # the first frame the model dreams
    context = lat[first[:, None] + torch.arange(-k, 0)].float().to(dev)
    before, ahead = recorded_windows(batches.data.actions, first, k, n)
    rollout = Rollout.of(context, before.to(dev))
    for j in range(n):
        rollout.advance(_bare_sampler(net, scheduler, steps, context_noise, generator, draw_code), ahead[:, j].to(dev))
    return rollout.context


@torch.no_grad()
def closed_loop_check(net, scheduler, vae, batches, steps: int, context_noise: float, horizon: int = 60,
                      dreams: int = 8, seed: int = 0, draw_code=None) -> dict[str, float]:
    """Dream ``horizon`` frames from real contexts of held-out data with the recorded actions (the
    closed-loop rollout play runs, its frames as play shows them: ``fusion.show`` without fusion).

    Returns, against the real frames: foreground PSNR/recall/precision over the first 30 frames
    (does the dream follow the game?) and ``fg_mass``, the dream's foreground pixel count over the
    real one's in the second half (do the objects survive? fading sprites drive it toward 0)."""
    k = batches.k
    ends = batches.ends_for_unroll(horizon)
    if len(ends) == 0:
        return {}
    pick = ends[torch.randperm(len(ends), generator=torch.Generator().manual_seed(seed))[:dreams]]
    starts = pick - horizon + 1  # first dreamed frame
    dev = next(net.parameters()).device
    frames = batches.data.frames
    background = frames[torch.randint(len(frames), (min(1024, len(frames)),),
                                      generator=torch.Generator().manual_seed(0))].median(0).values
    background = background.permute(2, 0, 1).float() / 255
    context = torch.stack([batches.latents[s - k : s] for s in starts.tolist()]).float().to(dev)
    before, ahead = recorded_windows(batches.data.actions, starts, k, horizon)
    gen = torch.Generator(device=dev).manual_seed(seed)
    dream = closed_loop(_bare_sampler(net, scheduler, steps, context_noise, gen, draw_code), context, before.to(dev), ahead.to(dev))

    def decode(z: torch.Tensor) -> torch.Tensor:
        return to_frames(vae.decode(z))

    early_made, early_real, mass_made, mass_real = [], [], 0, 0
    for h, z in enumerate(dream):
        if h < min(30, horizon) or h >= horizon // 2:
            made = frames_to_unit(show(z, None, decode).cpu())
            real = frames[starts + h].permute(0, 3, 1, 2).float() / 255
            if h < min(30, horizon):
                early_made.append(made)
                early_real.append(real)
            if h >= horizon // 2:
                mass_made += foreground_mask(made, background).sum().item()
                mass_real += foreground_mask(real, background).sum().item()
    m = foreground_scores(torch.cat(early_made), torch.cat(early_real), background)
    m["fg_mass"] = mass_made / max(1, mass_real)
    return m


def object_score(m: dict[str, float]) -> float:
    """Validation score that sees objects: teacher-forced PSNR at 4 steps, plus a dream's
    foreground PSNR, recall and precision early on, plus how much of its foreground survives
    later (whole-frame PSNR alone rewards dropping sprites)."""
    if "fg_psnr" not in m:
        return m["psnr4"]
    survival = min(m["fg_mass"], 1 / max(m["fg_mass"], 1e-6))  # 1 when as much foreground as the game
    return m["psnr4"] + m["fg_psnr"] + 5 * (m["fg_recall"] + m["fg_precision"]) + 20 * survival


@torch.no_grad()
def validate_student(objective, steps: tuple[int, ...]) -> dict[str, float]:
    """A student's validation (distill, rollout): teacher-forced PSNR at ``steps`` LCM steps, and a
    short dream's objects -- a student can keep its PSNR while losing sprites."""
    o = objective
    o.model.eval()
    m = {f"psnr{s}": teacher_forced_psnr(lambda c, a, s=s: sample(o.model, o.lcm, c, a, s), o.vae, o.val_batch) for s in steps}
    m.update(closed_loop_check(o.model, o.lcm, o.vae, o.val, 4, o.play_noise, horizon=o.cfg.val_horizon, dreams=o.cfg.val_dreams))
    o.model.train()
    m["score"] = object_score(m)
    return m
