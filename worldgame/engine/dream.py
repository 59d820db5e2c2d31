"""The dream: the world model playing the game, one frame per action, with no window and no real game.
The play window, bench, session regeneration (and a browser server) all step this one object.

One step: the batch-1 closed-loop rollout (models/rollout.py) takes the action and predicts the
next latent with the dream's prepared sampler (models/sampler.py: LCM, DDIM, DPM-Solver++ or the
teacher; its plans and fast path), then ``fusion.show`` turns it into the frame shown::

    action ─▶ action ring (K) ──┐
    latent ring (K, unfused) ───┴─▶ Sampler.step (1-8 steps) ─▶ z ─▶ latent ring
                                                                ├─▶ show: fusion (optional) + decode ─▶ frame
                                                                └─▶ event head (optional) ─▶ reward sign, game over

The rings are preallocated tensors shifted in place, so nothing grows with play time. Fusion only
ever changes what is shown: the rings hold the unfused latents. Everything that decides the frames
to come (rings, sampler generator, fusion history, steps, fusion mode) is in :meth:`Dream.snapshot`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from worldgame.engine.engines import StepResult, Wants, ms_since
from worldgame.engine.fusion import PHI, Fusion, FusionMode, TemporalFusion, show
from worldgame.models.chance import event_of, pack, unpack
from worldgame.models.heads import Heads
from worldgame.models.rollout import Rollout
from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel
from worldgame.settings import STEP_COUNTS

NOTHING_ELSE = Wants()


class Dream:
    """One closed-loop rollout (batch 1) of one world model, its prepared sampler and φ-fusion display.

    Args:
        model: a loaded WorldModel.
        fusion_window, fusion_base: the φ-decay fusion's N and decay base.
        seed: seeds the sampling generator (:meth:`start` re-seeds it).
        sampler: the prepared sampler the dream owns (models/sampler.py: the sampler choice, its
            plans and its fast path); None = the checkpoint's play default, on the torch modules.
        heads: the event head and agent (models/heads.py) with their fast path; None = the modules.
    """

    def __init__(self, model: WorldModel, fusion_window: int = 4, fusion_base: float = PHI, seed: int = 0,
                 sampler: Sampler | None = None, heads: Heads | None = None) -> None:
        self.model = model
        self.sampler = sampler if sampler is not None else Sampler(model)
        self.heads = heads if heads is not None else Heads(model)  # event head and agent, fast path or not
        k, cfg = model.context_length, model.denoiser.config
        dd: dict[str, Any] = {"device": model.device, "dtype": model.dtype}
        c, s = cfg.latent_channels, cfg.latent_size
        self.rollout = Rollout(1, k, (c, s, s), model.device, model.dtype)
        self.context, self.actions = self.rollout.context, self.rollout.actions  # [0, j]: action j produced context[0, j]
        self._z = torch.zeros(1, c, s, s, **dd)  # the predicted latent, written in place every step
        self._step_latents = torch.zeros(max(STEP_COUNTS), c, s, s, **dd)
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.display = Fusion(FusionMode.off, fusion_window, fusion_base)
        self.steps, self._timesteps = 0, []
        # the context noise this dream steps with (N cycles it): the dream's own, never the shared model's
        self.context_noise = float(model.context_noise)
        self.nonfinite = 0  # predicted latents holding NaN/inf (should stay 0)

    @property
    def fusion(self) -> TemporalFusion:
        """The display fusion's φ-decay history."""
        return self.display.temporal

    @property
    def fusion_mode(self) -> FusionMode:
        return self.display.mode

    def set_steps(self, steps: int) -> None:
        """Sampling steps per frame: 1..8 (1..1000 DDIM steps with the teacher sampler)."""
        most = self.sampler.max_steps
        if not 1 <= int(steps) <= most:
            raise ValueError(f"steps must be 1..{most}, got {steps}")
        if int(steps) != self.steps:
            self.steps, self._timesteps = int(steps), self.sampler.timesteps(int(steps))

    def set_fusion(self, mode: str | int | FusionMode) -> None:
        """Switch fusion mode; the fusion history starts afresh (latents and pixels don't mix)."""
        self.display.set_mode(mode)

    def start(self, frames: np.ndarray, seed: int) -> None:
        """Dream on from K real frames (oldest first), the sampler seeded with ``seed``."""
        self.generator.manual_seed(seed)
        self.actions.zero_()
        self.rejoin(frames)

    def rejoin(self, frames: np.ndarray) -> None:
        """Replace the context with K real frames (a re-sync: the dream rejoins reality)."""
        self.context[0].copy_(self.model.encode(frames))
        self.display.reset()

    def step(self, action: int, wants: Wants = NOTHING_ELSE) -> StepResult:
        """Predict the frame ``action`` leads to; ``wants`` adds the per-step or unfused frames."""
        t0 = time.perf_counter()
        self.rollout.push_action(action)  # actions of context frames 2..K, then this one
        stages = {"input": ms_since(t0)}
        t0 = time.perf_counter()
        z = self.rollout.predict(self._sample_into if not wants.step_frames else self._sample_showing_steps, self._z)
        self.nonfinite += not bool(torch.isfinite(z).all())
        self._sync()
        stages["denoise"] = ms_since(t0)
        if self.sampler.chance is not None:  # the prior's draw, timed apart (it runs before the steps)
            stages["chance"] = self.sampler.chance_ms
            stages["denoise"] -= self.sampler.chance_ms
        shown = show(z, self.display, self.sampler.decode, stages)[0]
        t0 = time.perf_counter()
        mode, unfused = self.fusion_mode, None
        if wants.unfused and mode is not FusionMode.off:
            unfused = self.sampler.decode(z)[0].cpu().numpy()
        shown_steps = min(self.steps, len(self._step_latents))  # the teacher's many DDIM steps: the first 8
        step_frames = self.sampler.decode(self._step_latents[:shown_steps]).cpu().numpy() if wants.step_frames else None
        self._sync()
        stages["decode"] += ms_since(t0)
        frame = shown.cpu().numpy()
        reward, done = self._events(stages)
        return StepResult(frame, reward=reward, done=done, stages_ms=stages, step_frames=step_frames,
                          step_timesteps=self._timesteps[:shown_steps] if wants.step_frames else None,
                          unfused=frame if wants.unfused and unfused is None else unfused)

    def _events(self, stages: dict[str, float]) -> tuple[float, bool]:
        """The reward's sign and the game's end of the transition just dreamed: the event the chance
        code drew with the frame (an ``event_group``), else the checkpoint's event head on the latent
        ring, timed as its own stage; 0 and False without either."""
        if self.model.draws_events and self.sampler.last_code is not None:
            return event_of(int(self.sampler.last_code[0, 0]))
        head = self.model.events
        if head is None:
            return 0.0, False
        t0 = time.perf_counter()
        sign, ended = self.heads.events(self.context, self.actions[:, -1])
        reward, done = float(sign[0]), bool(ended[0])
        stages["events"] = ms_since(t0)
        return reward, done

    def _sample_into(self, context: torch.Tensor, actions: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return self.sampler.step(context, actions, steps=self.steps, generator=self.generator, out=out,
                                 context_noise=self.context_noise)

    def _sample_showing_steps(self, context: torch.Tensor, actions: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return self.sampler.step(context, actions, steps=self.steps, generator=self.generator,
                                 on_step=self._capture_step, out=out, context_noise=self.context_noise)

    def warm_up(self) -> None:
        """Run the sampler and decoder on throwaway inputs (the traced graph optimises itself on its
        first calls, ~100 ms each, which would stall the first frames) and prepare the sampler of
        every step count a key chooses (switching steps allocates nothing). The dream's own
        generator is not touched."""
        scratch = torch.Generator(device=self.model.device).manual_seed(0)
        for steps in (1, 2):
            self.sampler.decode(self.sampler.step(self.context, self.actions, steps=steps, generator=scratch,
                                                  context_noise=self.context_noise))
        for steps in STEP_COUNTS:  # the teacher's other step counts are prepared on first use
            self.sampler.plan(steps, self.context, self.context_noise)
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
        self.display.mode = FusionMode.parse(state["fusion_mode"])
        ring = torch.as_tensor(state["fusion_ring"])
        if self.fusion_mode is FusionMode.pixel and ring.dim() == 4:  # sessions before show(): frames without a batch axis
            ring = ring[:, None]
        ring = {"ring": ring, "head": state["fusion_head"], "count": state["fusion_count"]}
        self.fusion.load_state(ring, self.model.device, self.model.dtype if self.fusion_mode is FusionMode.latent else torch.float32)

    def chance_column(self) -> float | None:
        """The chance code of the frame just made, packed into one number (a session column); None
        for a checkpoint without a code (or one too wide for a float32 column: then the generator,
        in the snapshot, still reproduces it on the same backend)."""
        sampler = self.sampler
        if sampler.chance is None or sampler.last_code is None or not self._chance_fits:
            return None
        return float(pack(sampler.last_code[0].tolist(), sampler.chance.config.values))

    def force_chance(self, packed: float) -> None:
        """The next step draws its code as usual but uses the recorded ``packed`` one."""
        chance = self.sampler.chance
        if chance is not None and self._chance_fits:
            self.sampler.force_code(unpack(int(packed), chance.config.groups, chance.config.values).to(self.model.device))

    @property
    def _chance_fits(self) -> bool:
        c = self.sampler.chance.config
        return c.values ** c.groups <= 1 << 24  # whole numbers a float32 column holds exactly

    def _capture_step(self, i: int, denoised: torch.Tensor) -> None:
        if i < len(self._step_latents):  # the teacher's many DDIM steps: the view shows the first 8
            self._step_latents[i].copy_(denoised[0])

    def _sync(self) -> None:  # CUDA runs ahead of the host: stage timings must wait for it
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
