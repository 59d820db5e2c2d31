"""What the teacher and distillation stages share: latents of every frame (encoded once) and
(context, actions, target) batches drawn from them, with context-noise augmentation."""

from __future__ import annotations

import torch
from tqdm import tqdm

from worldgame.eval.metrics import psnr
from worldgame.models.autoencoder import TinyAutoencoder
from worldgame.models.chance import event_values
from worldgame.train.data import FrameData, to_unit, windows


@torch.no_grad()
def encode_all(vae: TinyAutoencoder, frames: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    vae.eval()
    out = [vae.encode(to_unit(frames[i : i + batch]).to(device)).cpu() for i in tqdm(
        range(0, len(frames), batch), desc="encode frames", unit="batch", leave=False, disable=None)]
    return torch.cat(out)


class LatentBatches:
    """Draws training batches of latent windows.

    Args:
        data: frames, actions and valid window ends.
        latents: (N, C, h, w) latents of ``data.frames``.
        context_length: K.
        max_context_noise: context noise level per sample ~ U(0, max) (0 disables augmentation).
        per_frame: draw one level per context frame (B, K) instead of one per sample (B,).
    """

    def __init__(self, data: FrameData, latents: torch.Tensor, context_length: int, max_context_noise: float,
                 device: torch.device, per_frame: bool = False, rare_share: float = 0.0, rare_radius: int = 2,
                 appeared: bool = False) -> None:
        self.data, self.latents, self.k = data, latents, context_length
        # the events name an object's appearance too (models/chance.py EVENT_APPEARED): a chance code's choice
        self.appeared = data.appeared if appeared else None
        # rare_share of every batch comes from the windows around the game's events (FrameData.rare_ends)
        self.rare = data.rare_ends(rare_radius) if rare_share > 0 else data.ends[:0]
        self.rare_share = rare_share if len(self.rare) else 0.0
        # each window's importance weight, 1 / its sampling odds against uniform: a rare window (drawn by
        # both parts of the batch) weighs less, so a weighted loss is the uniform data's loss again
        self.is_rare = torch.zeros(len(data.frames) + 1, dtype=torch.bool)
        self.is_rare[self.rare] = True
        share, n = self.rare_share, max(1, len(data.ends))
        self.rare_weight = 1.0 / (share * n / max(1, len(self.rare)) + (1.0 - share)) if share > 0 else 1.0
        self.plain_weight = 1.0 / (1.0 - share) if share < 1 else 0.0
        self.max_context_noise, self.device, self.per_frame = max_context_noise, device, per_frame
        # valid[t]: frames t-K..t lie in one game episode (a context window plus its target)
        self.valid = torch.zeros(len(data.frames) + 1, dtype=torch.bool)
        self.valid[data.ends] = True

    def ends_for_unroll(self, unroll: int) -> torch.Tensor:
        """Targets t whose frames t-K-unroll..t lie in one game episode (room to unroll ``unroll`` frames)."""
        return self.data.ends[self.has_room(self.data.ends, unroll)]

    def has_room(self, ends: torch.Tensor, unroll: int) -> torch.Tensor:
        """Whether each target t in ``ends`` has frames t-K-unroll..t in one game episode (bool, like ``ends``)."""
        ok = torch.ones(len(ends), dtype=torch.bool)
        for j in range(1, unroll + 1):
            ok &= self.valid[(ends - j).clamp_min(0)] & (ends - j >= 0)
        return ok

    def sample(self, batch_size: int, gen: torch.Generator, noisy_context: bool = True) -> dict[str, torch.Tensor]:
        ends = self.data.ends[torch.randint(len(self.data.ends), (batch_size,), generator=gen)]
        n = round(batch_size * self.rare_share) if self.rare_share > 0 else 0
        if n:  # the first share of the batch: windows around events
            ends[:n] = self.rare[torch.randint(len(self.rare), (n,), generator=gen)]
        batch = self.at(ends, gen if noisy_context else None)
        batch["weight"] = torch.where(self.is_rare[ends], self.rare_weight, self.plain_weight).to(self.device)
        return batch

    def at(self, ends: torch.Tensor, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        ctx_idx, act_idx = windows(ends, self.k)
        clean = context = self.latents[ctx_idx].float()
        shape = (len(ends), self.k) if self.per_frame else (len(ends),)
        level = torch.zeros(shape)
        if gen is not None and self.max_context_noise > 0:
            level = torch.rand(shape, generator=gen) * self.max_context_noise
            per_frame = level if self.per_frame else level[:, None].expand(-1, self.k)
            context = context + per_frame[:, :, None, None, None] * torch.randn(context.shape, generator=gen)
        d = self.device
        noised = context.to(d)
        return {
            "context": noised,
            # the context as play gives it to the chance prior (the dream's own latents, never noised; the
            # prior has no noise level to read). On Bouncer's events the flat prior foresaw as much either
            # way (0.35 at 1,000 steps, both), so this is for agreement with play, not a measured gain
            "clean_context": noised if context is clean else clean.to(d),
            "actions": self.data.actions[act_idx].to(d),
            "target": self.latents[ends].float().to(d),
            "context_noise": level.to(d),
            "frames": self.data.frames[ends],
            "ends": ends,  # each window's target frame (a teacher's own rollout starts before it)
            **({"events": event_values(self.data.rewards[ends], self.data.dones[ends],
                                       None if self.appeared is None else self.appeared[ends]).to(d)}
               if self.data.rewards is not None and self.data.dones is not None else {}),
        }


@torch.no_grad()
def teacher_forced_psnr(sample_fn, vae: TinyAutoencoder, batch: dict[str, torch.Tensor]) -> float:
    """Mean PSNR (dB) of decoded predictions against the real frames of ``batch``."""
    pred = sample_fn(batch["context"], batch["actions"])
    img = ((vae.decode(pred).clamp(-1, 1) + 1) / 2).cpu()
    real = batch["frames"].permute(0, 3, 1, 2).float() / 255
    return psnr(img, real).mean().item()
