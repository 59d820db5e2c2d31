"""What the display shows over time: flicker, ghosting and lag of the shown stream against the game.

Play shows the world model's frames, optionally through the φ-decay display fusion
(``engine/fusion.py``: latent mode fuses latents before decoding, pixel mode fuses decoded
frames). Fusion can calm frame-to-frame shimmer, but an average of past frames also smears
(ghosts) moving objects and shows them late. This module measures all three on held-out play.

The stream is made *teacher-forced*: each frame t is predicted from the real K frames before it
and the real actions (batched over time), so the shown stream keeps tracking the real game and
can be compared with it frame by frame. Fusion is then run along time exactly as play runs it
(``fusion.show``, one ``Fusion`` per episode fed frame by frame; the model's context is never fused).

Measures, each over the frames after a short warm-up (:data:`WARMUP`, the same for every
setting) and pooled over episodes:

* ``flicker``: mean absolute change (0-255, per pixel and channel) between consecutive shown
  frames, on the pixels where the real game did not change between those two frames. The real
  game's own flicker is 0 by construction; a model that redraws a still scene a little
  differently every frame scores above 0.
  ``still_flicker``: the same on pixels where the real game has been still for the whole
  warm-up (WARMUP + 1 frames): no fused window reaches back to an object there, so fading trails
  do not count, only the shimmer fusion is meant to calm.
* ``fg_psnr`` (ghosting): foreground PSNR of each shown frame against its real frame
  (``objects.foreground_scores`` with the episode's median background; the mean over episodes).
  A ghost costs twice: the object's old place is foreground in the shown frame, its new place in
  the real one.
* ``lag_frames``: how many frames late the shown stream is. For τ = -2 .. max_lag + 1 the mean
  squared error E(τ) of shown[t] against real[t - τ], taken only on frames t where the real game
  moves and only over the pixels where it moves around t (a pixel that changes anywhere in
  real[t - max_lag - 2 .. t + 2]: the same pixels for every τ, so the E(τ) compare fairly);
  lag = the τ of the smallest E, refined to a fraction by a parabola through it and its two
  neighbours. A stream exactly one frame late has lag 1; a blend of past frames lands between
  them, near its weights' centre. Pixel errors need no object detector, so this works alike for
  the built-in game's sprites and an Atari game's, whatever their number and colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from worldgame.engine.fusion import Fusion, FusionMode, show
from worldgame.eval.metrics import frames_to_unit
from worldgame.eval.objects import foreground_scores
from worldgame.models.sampler import Sampler, as_sampler
from worldgame.models.world_model import WorldModel

__all__ = ["MAX_LAG", "WARMUP", "display_figures", "measure", "predict_latents", "shown_frames"]

WARMUP = 8  # frames skipped at each episode's start: the longest window measured (6) has filled
MAX_LAG = 6  # the largest lag looked for, in frames
MOVE_THRESHOLD = 25  # a pixel moves when a channel changes by more than this (0-255; objects.FG_THRESHOLD)


@torch.no_grad()
def predict_latents(sampler: Sampler | WorldModel, frames: np.ndarray, actions: np.ndarray, steps: int, seed: int,
                    batch: int = 64) -> torch.Tensor:
    """Teacher-forced predictions of frames K..T-1 of one episode: frame t from the real latents
    of frames t-K..t-1 and actions t-K+1..t. Returns latents (T-K, C, h, w) on the model's device."""
    sampler = as_sampler(sampler)
    model = sampler.model
    k = model.context_length
    lat = model.encode(frames)
    acts = torch.as_tensor(np.asarray(actions), device=model.device)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for lo in range(k, len(frames), batch):
        ts = torch.arange(lo, min(lo + batch, len(frames)))
        context = lat[ts[:, None] + torch.arange(-k, 0)]
        window = acts[ts[:, None] + torch.arange(-k + 1, 1)]
        out.append(sampler.step(context, window, steps=steps, generator=gen))
    return torch.cat(out)


@torch.no_grad()
def shown_frames(sampler: Sampler | WorldModel | None, latents: torch.Tensor,
                 fusion: tuple[FusionMode | str, int, float] | None = None, decoded: torch.Tensor | None = None) -> torch.Tensor:
    """The frames play shows for these consecutive latents: uint8 (T, H, W, 3) on the CPU.

    ``fusion``: (mode, window, base), or None / mode off for the model's own frames. Each frame goes
    through ``fusion.show`` in turn, one fusion history along time, as play shows it; only the
    decoding is batched over time (latent mode: the fused latents; else ``decoded``, made here
    from ``latents`` if not given).
    """
    mode = FusionMode.parse(fusion[0]) if fusion else FusionMode.off
    if mode is FusionMode.latent:  # show() with its decode deferred: the fused latents, decoded together below
        display = Fusion(mode, int(fusion[1]), float(fusion[2]))
        return _decode(as_sampler(sampler), torch.cat([show(z, display, _as_is).clone() for z in latents.split(1)]))
    frames = _decode(as_sampler(sampler), latents) if decoded is None else decoded
    if mode is FusionMode.off:
        return frames
    display = Fusion(mode, int(fusion[1]), float(fusion[2]))  # pixel: show() of frames decoded already
    return torch.cat([show(f, display, _as_is).clone() for f in frames.split(1)])


def _as_is(x: torch.Tensor) -> torch.Tensor:
    return x


def _decode(sampler: Sampler, latents: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([sampler.decode(latents[i : i + batch]).cpu() for i in range(0, len(latents), batch)])


def measure(episodes: Sequence[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray, torch.Tensor]],
            warmup: int = WARMUP, max_lag: int = MAX_LAG) -> dict[str, float | int | None]:
    """Flicker, foreground PSNR and lag of shown streams against the real game.

    ``episodes``: (shown, real, background) per episode; shown and real uint8 (T, H, W, 3) with
    shown[t] the display of real[t]; background (3, H, W) in [0, 1] (``objects.median_background``).
    Returns ``flicker`` and ``still_flicker`` (0-255), ``fg_psnr`` (dB), ``lag_frames`` (None
    when the real game never moves) and ``moving_frames`` (how many frames the lag rests on)."""
    taus = list(range(-2, max_lag + 2))
    flick_sum, flick_n, fg, err, err_n, moving = 0.0, 0, [], np.zeros(len(taus)), 0, 0
    still_sum, still_n = 0.0, 0
    for shown, real, background in episodes:
        s, r = torch.as_tensor(np.asarray(shown)).float(), torch.as_tensor(np.asarray(real)).float()
        if s.shape != r.shape:
            raise ValueError(f"shown {tuple(s.shape)} and real {tuple(r.shape)} frames differ in shape")
        # flicker: the shown change where the real game is still
        static = (r[warmup + 1 :] == r[warmup:-1]).all(-1)
        change = (s[warmup + 1 :] - s[warmup:-1]).abs().mean(-1)
        flick_sum, flick_n = flick_sum + float(change[static].sum()), flick_n + int(static.sum())
        eq = torch.ones(r.shape[:3], dtype=torch.bool)  # eq[t]: real[t] == real[t - 1]
        eq[1:] = (r[1:] == r[:-1]).all(-1)
        still = static.clone()
        for j in range(1, warmup):  # still for warmup + 1 frames: no real change inside any window measured
            still &= eq[warmup + 1 - j : len(r) - j]
        still_sum, still_n = still_sum + float(change[still].sum()), still_n + int(still.sum())
        # ghosting
        fg.append(foreground_scores(frames_to_unit(s[warmup:]), frames_to_unit(r[warmup:]), background)["fg_psnr"])
        # lag: E(τ) on the moving frames, over the pixels that move around each
        moves = torch.zeros(r.shape[:3], dtype=torch.bool)
        moves[1:] = (r[1:] - r[:-1]).abs().amax(-1) > MOVE_THRESHOLD
        first, last = max(warmup, max_lag + 3), len(r) - 3  # every real[t - τ] and the region's frames exist
        if last < first:
            continue
        ts = torch.arange(first, last + 1)
        ts = ts[moves[ts].flatten(1).any(1)]
        if len(ts) == 0:
            continue
        region = torch.zeros((len(ts), *r.shape[1:3]), dtype=torch.bool)
        for j in range(-max_lag - 1, 3):
            region |= moves[ts + j]
        for i, tau in enumerate(taus):
            sq = (s[ts] - r[ts - tau]).square().sum(-1)
            err[i] += float(sq[region].sum())
        err_n, moving = err_n + 3 * int(region.sum()), moving + len(ts)
    return {"flicker": flick_sum / max(flick_n, 1), "still_flicker": still_sum / max(still_n, 1),
            "fg_psnr": float(np.mean(fg)) if fg else None,
            "lag_frames": _argmin_refined(err / err_n, taus) if err_n else None, "moving_frames": moving}


def _argmin_refined(values: np.ndarray, taus: list[int]) -> float:
    """The τ of the smallest value, refined by a parabola through it and its neighbours."""
    i = int(np.clip(np.argmin(values), 1, len(values) - 2))  # the ends have one neighbour only
    a, b, c = values[i - 1], values[i], values[i + 1]
    curve = a - 2 * b + c
    offset = 0.5 * (a - c) / curve if curve > 0 else 0.0
    return float(taus[i] + np.clip(offset, -0.5, 0.5))


def display_figures(sampler: Sampler | WorldModel, episodes: Sequence[tuple[np.ndarray, np.ndarray]], steps: int,
                    fusion: tuple[FusionMode | str, int, float] | None, seed: int) -> dict:
    """`worldgame eval`'s ``display`` key: the shown stream's flicker, fg PSNR and lag with this
    fusion (mode, window, base) on teacher-forced held-out ``episodes`` (frames, actions), and
    the same with fusion off (``off``) from the same predictions."""
    from worldgame.eval.objects import median_background

    sampler = as_sampler(sampler)
    k = sampler.model.context_length
    made = {"off": [], "fused": []}
    for e, (frames, actions) in enumerate(episodes):
        latents = predict_latents(sampler, frames, actions, steps, seed + e)
        decoded = _decode(sampler, latents)
        real, bg = frames[k:], median_background(frames)
        made["off"].append((decoded, real, bg))
        made["fused"].append((shown_frames(sampler, latents, fusion, decoded), real, bg))
    mode = FusionMode.parse(fusion[0]) if fusion else FusionMode.off
    warmup = min(WARMUP, max(0, len(episodes[0][0]) - k - 2))

    def rounded(d: dict) -> dict:
        return {key: round(v, 3) if isinstance(v, float) else v for key, v in d.items()}

    return {"fusion": mode.value, "window": int(fusion[1]) if fusion else 0, "base": float(fusion[2]) if fusion else None,
            "steps": int(steps), "frames": sum(len(f) - k for f, _ in episodes),
            **rounded(measure(made["fused"], warmup)), "off": rounded(measure(made["off"], warmup))}
