"""The dream: the world model playing the game, one frame per action, with no window and no real game.
The play window, bench, session regeneration (and a browser server) all step this one object.

One step::

    action ─▶ action ring (K) ──┐
    latent ring (K, unfused) ───┴─▶ WorldModel.step (LCM, 1-8 steps) ─▶ z ─▶ latent ring
                                                                        └─▶ fusion (optional) ─▶ decode ─▶ frame

The rings are preallocated tensors shifted in place, so nothing grows with play time. Fusion only
ever changes what is shown: the rings hold the unfused latents. Everything that decides the frames
to come (rings, sampler generator, fusion history, steps, fusion mode) is in :meth:`Dream.snapshot`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from worldgame.models.world_model import MAX_TEACHER_STEPS, WorldModel
from worldgame.runtime.engines import StepResult, Wants, ms_since
from worldgame.runtime.fusion import PHI, FusionMode, TemporalFusion
from worldgame.settings import STEP_COUNTS

NOTHING_ELSE = Wants()


class Dream:
    """K-latent ring, LCM sampling, φ-fusion and decoding for one world model (batch 1).

    Args:
        model: a loaded WorldModel (already on its backend).
        fusion_window, fusion_base: the φ-decay fusion's N and decay base.
        seed: seeds the sampling generator (:meth:`start` re-seeds it).
    """

    def __init__(self, model: WorldModel, fusion_window: int = 4, fusion_base: float = PHI, seed: int = 0) -> None:
        self.model = model
        k, cfg, n = model.context_length, model.denoiser.config, model.frame_size
        dd: dict[str, Any] = {"device": model.device, "dtype": model.dtype}
        c, s = cfg.latent_channels, cfg.latent_size
        self.context = torch.zeros(1, k, c, s, s, **dd)  # oldest first, never fused
        self.actions = torch.zeros(1, k, dtype=torch.long, device=model.device)  # [j] produced context[j]
        self._context_shift = torch.empty(1, max(k - 1, 0), c, s, s, **dd)
        self._actions_shift = torch.empty(1, max(k - 1, 0), dtype=torch.long, device=model.device)
        self._z = torch.zeros(1, c, s, s, **dd)  # the predicted latent, written in place every step
        self._step_latents = torch.zeros(max(STEP_COUNTS), c, s, s, **dd)
        self._pixels = [torch.zeros(n, n, 3, device=model.device, dtype=t) for t in (torch.float32, torch.float32, torch.uint8)]
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.fusion = TemporalFusion(fusion_window, fusion_base)
        self.fusion_mode = FusionMode.off
        self.steps, self._timesteps = 0, []
        self.nonfinite = 0  # predicted latents holding NaN/inf (should stay 0)

    def set_steps(self, steps: int) -> None:
        """Sampling steps per frame: 1..8 (1..1000 DDIM steps with the teacher sampler)."""
        most = MAX_TEACHER_STEPS if self.model.sampler == "teacher" else max(STEP_COUNTS)
        if not 1 <= int(steps) <= most:
            raise ValueError(f"steps must be 1..{most}, got {steps}")
        if int(steps) != self.steps:
            self.steps, self._timesteps = int(steps), self.model.timesteps(int(steps))

    def set_fusion(self, mode: str | int | FusionMode) -> None:
        """Switch fusion mode; the fusion history starts afresh (latents and pixels don't mix)."""
        if FusionMode.parse(mode) is not self.fusion_mode:
            self.fusion_mode = FusionMode.parse(mode)
            self.fusion.reset()

    def start(self, frames: np.ndarray, seed: int) -> None:
        """Dream on from K real frames (oldest first), the sampler seeded with ``seed``."""
        self.generator.manual_seed(seed)
        self.actions.zero_()
        self.rejoin(frames)

    def rejoin(self, frames: np.ndarray) -> None:
        """Replace the context with K real frames (a re-sync: the dream rejoins reality)."""
        self.context[0].copy_(self.model.encode(frames))
        self.fusion.reset()

    def step(self, action: int, wants: Wants = NOTHING_ELSE) -> StepResult:
        """Predict the frame ``action`` leads to; ``wants`` adds the per-step or unfused frames."""
        t0 = time.perf_counter()
        _push(self.actions, self._actions_shift, action)  # actions of context frames 2..K, then this one
        stages = {"input": ms_since(t0)}
        t0 = time.perf_counter()
        on_step = self._capture_step if wants.step_frames else None
        z = self.model.step(self.context, self.actions, steps=self.steps, generator=self.generator, on_step=on_step, out=self._z)
        self.nonfinite += not bool(torch.isfinite(z).all())
        _push(self.context, self._context_shift, z[0])  # the unfused latent joins the context
        self._sync()
        stages["denoise"], stages["fusion"] = ms_since(t0), 0.0
        mode, latent, unfused = self.fusion_mode, z, None
        if mode is FusionMode.latent:
            t0 = time.perf_counter()
            latent = self.fusion(z)
            stages["fusion"] = ms_since(t0)
        t0 = time.perf_counter()
        decoded = self.model.decode(latent)[0]
        if wants.unfused and mode is FusionMode.latent:
            unfused = self.model.decode(z)[0].cpu().numpy()
        shown_steps = min(self.steps, len(self._step_latents))  # the teacher's many DDIM steps: the first 8
        step_frames = self.model.decode(self._step_latents[:shown_steps]).cpu().numpy() if wants.step_frames else None
        self._sync()
        stages["decode"] = ms_since(t0)
        if mode is FusionMode.pixel:
            t0 = time.perf_counter()
            unfused = decoded.cpu().numpy() if wants.unfused else None
            fused_in, rounded, fused = self._pixels
            fused_in.copy_(decoded)
            torch.round(self.fusion(fused_in), out=rounded)
            decoded = fused.copy_(rounded)
            stages["fusion"] = ms_since(t0)
        frame = decoded.cpu().numpy()
        return StepResult(frame, stages_ms=stages, step_frames=step_frames,
                          step_timesteps=self._timesteps[:shown_steps] if wants.step_frames else None,
                          unfused=frame if wants.unfused and unfused is None else unfused)

    def warm_up(self) -> None:
        """Run the sampler and decoder on throwaway inputs (the traced graph optimises itself on its
        first calls, ~100 ms each, which would stall the first frames) and prepare the sampler of
        every step count a key chooses (switching steps allocates nothing). The dream's own
        generator is not touched."""
        scratch = torch.Generator(device=self.model.device).manual_seed(0)
        for steps in (1, 2):
            self.model.decode(self.model.step(self.context, self.actions, steps=steps, generator=scratch))
        for steps in STEP_COUNTS if self.model.sampler != "teacher" else ():  # the teacher runs diffusers' own
            self.model.prepare(steps, self.context)
        self._sync()

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides the frames to come, as numpy arrays and plain values: restored
        into a dream of the same checkpoint it continues bit-identically (same device and backend)."""
        fusion = self.fusion.state()
        return {
            "context": self.context[0].float().cpu().numpy().copy(),
            "actions": self.actions[0].cpu().numpy().copy(),
            "generator": self.generator.get_state().numpy().copy(),
            "fusion_ring": fusion["ring"].float().numpy(),
            "fusion_head": int(fusion["head"]),
            "fusion_count": int(fusion["count"]),
            "fusion_mode": self.fusion_mode.value,
            "steps": self.steps,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`snapshot` (also those of sessions recorded before this file)."""
        self.context[0].copy_(torch.as_tensor(state["context"]).to(self.model.dtype))
        self.actions[0].copy_(torch.as_tensor(state["actions"]).long())
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
        self.set_steps(int(state["steps"]))
        self.fusion_mode = FusionMode.parse(state["fusion_mode"])
        ring = {"ring": torch.as_tensor(state["fusion_ring"]), "head": state["fusion_head"], "count": state["fusion_count"]}
        self.fusion.load_state(ring, self.model.device, self.model.dtype if self.fusion_mode is FusionMode.latent else torch.float32)

    def _capture_step(self, i: int, denoised: torch.Tensor) -> None:
        if i < len(self._step_latents):  # the teacher's many DDIM steps: the view shows the first 8
            self._step_latents[i].copy_(denoised[0])

    def _sync(self) -> None:  # CUDA runs ahead of the host: stage timings must wait for it
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)


def _push(ring: torch.Tensor, scratch: torch.Tensor, newest: torch.Tensor | int) -> None:
    """Shift ``ring`` (1, K, ...) one slot toward the oldest, in place, and write ``newest`` last."""
    if scratch.shape[1]:
        scratch.copy_(ring[:, 1:])
        ring[:, :-1].copy_(scratch)
    ring[:, -1] = newest
