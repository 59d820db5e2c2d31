"""ModelEngine: the world model as a game engine.

One tick::

    action ─▶ action ring (K) ─┐
    latent ring (K, unfused) ──┴─▶ WorldModel.step (LCM, 1-8 steps) ─▶ z_t ─▶ latent ring
                                                                        └─▶ fusion ─▶ decode ─▶ frame

The rings are preallocated tensors shifted in place, so nothing grows with play time. The real
game runs beside the model in lockstep on the same actions: it supplies the real frames the dream
starts from (reset) and re-syncs to (``resync``), and the World Model view shows it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from worldgame.games import make_game
from worldgame.models.world_model import WorldModel
from worldgame.runtime.engines import StepResult
from worldgame.runtime.fusion import PHI, FusionMode, TemporalFusion

MAX_STEPS = 8
REF_LOG_CAPACITY = 1 << 20  # actions since the real game's last reset kept for session snapshots (~9 h at 30 Hz)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class ModelEngine:
    """The world model as a game engine: K-latent ring buffer, LCM sampling, fusion, decode.

    Args:
        model: a loaded WorldModel.
        steps: LCM sampling steps per frame (1, 2, 4 or 8; change live with :meth:`set_steps`).
        fusion: display fusion mode (off, latent, pixel).
        fusion_window: N, past frames fused with the current one.
        fusion_base: decay base (φ by default).
        seed: seeds the sampling generator (``reset`` re-seeds it) for reproducible sessions.
        optimize: trace the denoiser for batch 1 on CPU (WorldModel.optimize), ~1.5x faster.
    """

    kind = "model"

    def __init__(
        self,
        model: WorldModel,
        steps: int = 4,
        fusion: str | FusionMode = FusionMode.OFF,
        fusion_window: int = 4,
        fusion_base: float = PHI,
        seed: int = 0,
        optimize: bool = True,
    ) -> None:
        self.model = model
        meta = model.metadata
        self.game = make_game(meta["game_config"])  # reality, in lockstep
        self.frame_size = model.frame_size
        self.action_names = list(model.action_names)
        self.key_bindings = {k: list(v) for k, v in meta.get("key_bindings", self.game.key_bindings).items()}
        self.device, self.dtype = model.device, model.dtype
        self.optimized = optimize and self.device.type == "cpu"
        if self.optimized:
            model.optimize(1)
        k = model.context_length
        cfg = model.denoiser.config
        c, s, n = cfg.latent_channels, cfg.latent_size, self.frame_size
        dd: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        self._context = torch.zeros(1, k, c, s, s, **dd)  # oldest first, never fused
        self._context_shift = torch.empty(1, max(k - 1, 0), c, s, s, **dd)
        self._actions = torch.zeros(1, k, dtype=torch.long, device=self.device)  # [j] produced context[j]
        self._actions_shift = torch.empty(1, max(k - 1, 0), dtype=torch.long, device=self.device)
        self._step_latents = torch.zeros(MAX_STEPS, c, s, s, **dd)
        self._pixels_in = torch.zeros(n, n, 3, device=self.device, dtype=torch.float32)
        self._pixels_round = torch.zeros(n, n, 3, device=self.device, dtype=torch.float32)
        self._pixels_out = torch.zeros(n, n, 3, device=self.device, dtype=torch.uint8)
        self._real = np.zeros((k, n, n, 3), np.uint8)  # the real game's last K frames, oldest first
        self._ref_log = np.zeros(REF_LOG_CAPACITY, np.int8)
        self._ref_n = 0
        self._ref_seed = seed
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.fusion = TemporalFusion(fusion_window, fusion_base)
        self.fusion_mode = FusionMode.parse(fusion)
        self.steps = 0
        self.set_steps(steps)
        self.want_steps = False  # LCM Steps view: decode the estimate after every step
        self.want_unfused = False  # Temporal view: also decode the unfused latent
        self.nonfinite = 0  # predicted latents holding NaN/inf (should stay 0)
        self._timesteps: list[int] = []
        self._warm_up()

    @property
    def context_length(self) -> int:
        return self.model.context_length

    # --- live settings -----------------------------------------------------------------------
    def set_steps(self, steps: int) -> None:
        """LCM sampling steps per frame (1..8)."""
        if not 1 <= int(steps) <= MAX_STEPS:
            raise ValueError(f"steps must be 1..{MAX_STEPS}, got {steps}")
        self.steps = int(steps)

    def set_fusion(self, mode: str | FusionMode) -> None:
        """Switch fusion mode; the fusion history starts afresh (latents and pixels don't mix)."""
        mode = FusionMode.parse(mode)
        if mode is not self.fusion_mode:
            self.fusion_mode = mode
            self.fusion.reset()

    # --- the engine interface ----------------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        """Start the real game at ``seed``, step it K-1 NOOP frames and encode them as the context."""
        self.generator.manual_seed(seed)
        self._ref_seed, self._ref_n = seed, 0
        self._real[-1] = self.game.reset(seed)
        for _ in range(self.context_length - 1):
            self._step_real(0)
        self._actions.zero_()
        self._encode_context()
        return self._real[-1].copy()

    def resync(self) -> None:
        """Replace the model's context with the real game's last K frames (the dream rejoins reality)."""
        self._encode_context()

    def step(self, action: int) -> StepResult:
        """Predict the next frame for ``action``; the unfused latent joins the context."""
        t0 = time.perf_counter()
        if self._actions_shift.shape[1]:
            self._actions_shift.copy_(self._actions[:, 1:])
            self._actions[:, :-1].copy_(self._actions_shift)
        self._actions[0, -1] = action  # now: actions of context frames 2..K, then this one
        real_info = self._step_real(action)
        stages = {"input": _ms(t0)}

        t0 = time.perf_counter()
        on_step = self._capture_step if self.want_steps else None
        z = self.model.step(self._context, self._actions, steps=self.steps, generator=self.generator, on_step=on_step)
        if not bool(torch.isfinite(z).all()):
            self.nonfinite += 1
        if self._context_shift.shape[1]:
            self._context_shift.copy_(self._context[:, 1:])
            self._context[:, :-1].copy_(self._context_shift)
        self._context[:, -1].copy_(z[0])
        self._sync()
        stages["denoise"] = _ms(t0)

        mode = self.fusion_mode
        fusion_ms = 0.0
        if mode is FusionMode.LATENT:
            t0 = time.perf_counter()
            shown = self.fusion(z)
            fusion_ms = _ms(t0)
        else:
            shown = z
        t0 = time.perf_counter()
        decoded = self.model.decode(shown)[0]
        unfused: np.ndarray | None = None
        if self.want_unfused and mode is FusionMode.LATENT:
            unfused = self.model.decode(z)[0].cpu().numpy()
        step_frames = None
        if self.want_steps:
            step_frames = self.model.decode(self._step_latents[: self.steps]).cpu().numpy()
        self._sync()
        decode_ms = _ms(t0)
        if mode is FusionMode.PIXEL:
            t0 = time.perf_counter()
            self._pixels_in.copy_(decoded)
            fused = self.fusion(self._pixels_in)
            torch.round(fused, out=self._pixels_round)
            self._pixels_out.copy_(self._pixels_round)
            if self.want_unfused:
                unfused = decoded.cpu().numpy()
            decoded = self._pixels_out
            fusion_ms = _ms(t0)
        frame = decoded.cpu().numpy()
        if self.want_unfused and unfused is None:
            unfused = frame
        stages["fusion"] = fusion_ms
        stages["decode"] = decode_ms
        return StepResult(
            frame,
            info={"real": real_info},
            stages_ms=stages,
            step_frames=step_frames,
            step_timesteps=self._timesteps[: self.steps] if self.want_steps else None,
            unfused=unfused,
            real=self._real[-1],
        )

    # --- helpers -----------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Run the sampler and decoder a few times on throwaway inputs: the traced graph optimises
        itself on its first calls (~100 ms each), which would otherwise stall the first frames."""
        scratch = torch.Generator(device=self.device).manual_seed(0)
        for steps in (1, 2):
            z = self.model.step(self._context, self._actions, steps=steps, generator=scratch)
            self.model.decode(z)
        self._sync()

    def _capture_step(self, i: int, denoised: torch.Tensor) -> None:
        self._step_latents[i].copy_(denoised[0])
        if i == 0:
            self._timesteps = [int(t) for t in self.model.scheduler.timesteps]

    def _step_real(self, action: int) -> dict[str, Any]:
        frame, _, done, info = self.game.step(action)
        self._real[:-1] = self._real[1:]  # numpy copies overlapping slices safely
        self._real[-1] = frame
        if self._ref_n < REF_LOG_CAPACITY:
            self._ref_log[self._ref_n] = action
        self._ref_n += 1
        if done:  # the real game is over: it restarts on its own, the dream goes on
            self._ref_seed += 1
            self._ref_n = 0
            self._real[-1] = self.game.reset(self._ref_seed)
        return info

    def _encode_context(self) -> None:
        self._context[0].copy_(self.model.encode(self._real))
        self.fusion.reset()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- sessions: capture and restore the exact state ----------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything that decides the frames to come, as numpy arrays and plain values.

        Restoring it with :meth:`load_state` into an engine on the same checkpoint reproduces the
        stream exactly (bit-identical on the same device). The real game is kept as its reset seed
        plus the actions since, and replayed on restore.
        """
        fusion = self.fusion.state()
        state: dict[str, Any] = {
            "context": self._context[0].float().cpu().numpy().copy(),
            "actions": self._actions[0].cpu().numpy().copy(),
            "generator": self.generator.get_state().numpy().copy(),
            "fusion_ring": fusion["ring"].float().numpy(),
            "fusion_head": int(fusion["head"]),
            "fusion_count": int(fusion["count"]),
            "fusion_mode": self.fusion_mode.value,
            "steps": self.steps,
            "ref_seed": self._ref_seed,
        }
        if self._ref_n <= REF_LOG_CAPACITY:
            state["ref_actions"] = self._ref_log[: self._ref_n].copy()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` captured (see there)."""
        self._context[0].copy_(torch.as_tensor(state["context"]).to(self.dtype))
        self._actions[0].copy_(torch.as_tensor(state["actions"]).long())
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
        self.set_steps(int(state["steps"]))
        self.fusion_mode = FusionMode.parse(state["fusion_mode"])
        ring_dtype = self.dtype if self.fusion_mode is FusionMode.LATENT else torch.float32
        self.fusion.load_state(
            {"ring": torch.as_tensor(state["fusion_ring"]), "head": state["fusion_head"], "count": state["fusion_count"]},
            self.device,
            ring_dtype,
        )
        self._ref_seed = int(state["ref_seed"])
        if "ref_actions" in state:
            self._ref_n = 0
            self._real[-1] = self.game.reset(self._ref_seed)
            for a in np.asarray(state["ref_actions"]).tolist():
                self._step_real(int(a))
