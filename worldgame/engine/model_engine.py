"""ModelEngine: the dream behind the play loop's engine interface, with the real game beside it.

It joins a :class:`~worldgame.engine.dream.Dream` (the per-frame path) and a
:class:`~worldgame.engine.lockstep.LockstepGame` (the real game on the same actions, played only
when looked at: at reset, in the World Model view and for a re-sync), and takes the loop's live
controls and per-view requests (``want``) as explicit calls.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from worldgame.engine.calibration import attach  # the fast path, with the int8 calibration dream
from worldgame.engine.dream import Dream
from worldgame.engine.engines import NO_AGENT, EngineStatus, StepResult, Wants, ms_since
from worldgame.engine.fusion import PHI, FusionMode
from worldgame.engine.lockstep import LockstepGame
from worldgame.games import make_game
from worldgame.models.heads import Heads
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import SAMPLER_LABELS
from worldgame.models.world_model import WorldModel


class DreamScore:
    """The dream's own score and lives, kept from its predicted events (the checkpoint's event head).

    A point (+) adds one; a minus event costs a life where the game has lives (Bouncer's
    ``start_lives``), else a point (Boxing: the opponent scored). ``lives`` None: the game counts none.
    """

    def __init__(self, game: Any) -> None:
        lives = getattr(game, "start_lives", None)  # the real game's own setting (gym games count none here)
        self.start_lives = None if getattr(game, "infinite_lives", False) or not isinstance(lives, int) else lives
        self.reset()

    def reset(self) -> None:
        self.score, self.lives = 0, self.start_lives

    def add(self, reward: float) -> None:
        if reward > 0:
            self.score += 1
        elif reward < 0:
            if self.lives is None:
                self.score -= 1
            else:
                self.lives = max(0, self.lives - 1)

    def over(self, ended: bool) -> bool:
        """Whether the game is over: the head saw the end (then no lives are left) or none are left."""
        if ended and self.lives is not None:
            self.lives = 0
        return ended or self.lives == 0

    def text(self) -> str:
        return str(self.score) if self.lives is None else f"{self.score}  lives {self.lives}"

    def state(self) -> dict[str, int]:
        return {"dream_score": self.score, "dream_lives": -1 if self.lives is None else self.lives}

    def load_state(self, state: dict[str, Any]) -> None:
        """Sessions recorded before the dream kept a score start it afresh."""
        self.score = int(state.get("dream_score", 0))
        lives = int(state.get("dream_lives", -1 if self.start_lives is None else self.start_lives))
        self.lives = None if lives < 0 or self.start_lives is None else lives


class ModelEngine:
    """The world model as a game engine.

    Args:
        model: a loaded WorldModel.
        steps: sampling steps per frame (1, 2, 4 or 8; change live with :meth:`set_steps`).
        fusion: display fusion mode (off, latent, pixel).
        fusion_window: N, past frames fused with the current one.
        fusion_base: decay base (φ by default).
        seed: seeds the sampling generator (``reset`` re-seeds it) for reproducible sessions.
        optimize: trace the sampled network for batch 1 on CPU (Sampler.trace), ~2x faster (torch backend).
        backend: ``torch``, ``onnx`` or ``auto`` (models/backends/); ``self.backend`` is the one in use.
        precision: ``fp32`` or ``int8`` on ONNX Runtime (None: its default); ``dream.sampler.precision`` is the one in use.
        sampler, spacing: the sampler the dream runs (models/sampler.py ``choose``; None: the
            checkpoint's play default).
        share: an engine of the same model whose prepared sampler (backend, traced graph, plans)
            this one uses instead of preparing its own: serve's dreams take turns in one thread,
            so a new player costs no trace, no export and no warm-up. ``optimize``, ``backend``,
            ``sampler`` and ``spacing`` are then the shared engine's.
    """

    kind = "model"
    live = frozenset({"steps", "fusion", "views", "resync", "context_noise"})

    def __init__(
        self,
        model: WorldModel,
        steps: int = 4,
        fusion: str | FusionMode = FusionMode.off,
        fusion_window: int = 4,
        fusion_base: float = PHI,
        seed: int = 0,
        optimize: bool = True,
        backend: str = "torch",
        precision: str | None = None,
        sampler: str | None = None,
        spacing: str | None = None,
        share: ModelEngine | None = None,
        chance_temperature: float = 1.0,
    ) -> None:
        self.model = model
        self.real = LockstepGame(make_game(model.metadata["game_config"]), model.context_length)
        self.frame_size = model.frame_size
        self.action_names = list(model.action_names)
        bindings = model.metadata.get("key_bindings", self.game.key_bindings)
        self.key_bindings = {k: list(v) for k, v in bindings.items()}
        prepared = share.dream.sampler if share is not None else Sampler(model, sampler, spacing)
        heads = share.dream.heads if share is not None else Heads(model)
        self.dream = Dream(model, fusion_window, fusion_base, seed, sampler=prepared, heads=heads)
        self.score = DreamScore(self.game) if model.has_events else None
        # the checkpoint's agent (optional) plays the dream; its draws have their own generator, seeded at each reset
        self.agent_generator = torch.Generator(device=model.device).manual_seed(seed) if model.agent is not None else None
        self.live = type(self).live | ({"agent"} if model.agent is not None else set())
        self.agent_missing = NO_AGENT.format(getattr(model, "path", "(in memory)"))
        if share is not None:
            self.backend, self.optimized = share.backend, share.optimized
        else:
            self.backend = attach(self.dream.sampler, backend, precision=precision, heads=heads)
            self.optimized = optimize and model.device.type == "cpu" and self.backend == "torch"
            if self.optimized:
                self.dream.sampler.trace(1)
        self.dream.set_steps(steps)
        self.dream.set_fusion(fusion)
        if share is None:
            self.dream.sampler.chance_temperature = float(chance_temperature)
        self.wants = Wants()
        own = float(model.context_noise)  # what the checkpoint was trained to play with
        self.context_noise_levels = share.context_noise_levels if share is not None else tuple(dict.fromkeys((own, 0.0, 2 * own or 0.1)))
        if share is None:  # a shared sampler is warm already
            self.dream.warm_up()

    @property
    def game(self) -> Any:
        """The real game beside the dream."""
        return self.real.game

    @property
    def native_size(self) -> object:
        return getattr(self.game, "native_size", None)

    @property
    def steps(self) -> int:
        return self.dream.steps

    # --- the engine interface (engines.Engine) ---------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        """Reset the real game at ``seed`` and start the dream from its first K frames."""
        frames = self.real.reset(seed)
        self.dream.start(frames, seed)
        if self.agent_generator is not None:
            self.agent_generator.manual_seed(seed)
        if self.score is not None:
            self.score.reset()
        return frames[-1].copy()

    def step(self, action: int) -> StepResult:
        self.real.follow(action)
        result = self.dream.step(action, self.wants)
        if self.score is not None:
            self.score.add(result.reward)
            # one game over, however it shows: the head's end, or the last life the HUD counts gone
            result.done = self.score.over(result.done)
        if self.wants.real:
            t0 = time.perf_counter()
            result.real = self.real.frames()[-1]
            result.stages_ms["game"] = ms_since(t0)
        result.info = {"real": self.real.info}  # fresh where the real game was looked at
        return result

    def agent_action(self) -> int:
        """The agent's move on the frame on screen: its policy on the dream's own latent ring, read in
        place (the newest latent is that frame's), drawn with the generator seeded at reset."""
        return int(self.dream.heads.act(self.dream.context, self.agent_generator)[0])

    def resync(self) -> None:
        """Replace the dream's context with the real game's last K frames (the dream rejoins reality)."""
        self.dream.rejoin(self.real.frames())

    def set_steps(self, steps: int) -> None:
        self.dream.set_steps(steps)

    def set_fusion(self, mode: str | int | FusionMode) -> None:
        self.dream.set_fusion(mode)

    def set_context_noise(self, level: float) -> None:
        """The context noise of the next steps: the level of :attr:`context_noise_levels` nearest
        ``level`` (a session column, stored as float32, comes back exactly)."""
        self.dream.context_noise = min(self.context_noise_levels, key=lambda x: abs(x - float(level)))

    def force_chance(self, packed: float) -> None:
        """The next step uses this recorded chance code (a session's ``chance`` column) instead of
        its draw: regeneration reproduces the recorded codes whatever the backend's rounding."""
        self.dream.force_chance(packed)

    def want(self, wants: Wants) -> None:
        self.wants = wants

    def status(self) -> EngineStatus:
        d, real_score = self.dream, self.real.info.get("score")
        return EngineStatus(
            steps=d.steps,
            sampler=SAMPLER_LABELS[d.sampler.name],
            fusion=d.fusion_mode,
            fusion_weights=d.fusion.weights if d.fusion_mode is not FusionMode.off else None,
            nonfinite=d.nonfinite,
            score=self.score.text() if self.score is not None else "none (no event head)",
            real_score=None if real_score is None else str(real_score),
            context_noise=self.dream.context_noise,
            chance=self.dream.chance_column(),
        )

    # --- sessions: capture and restore the exact state -------------------------------------------
    def state(self) -> dict[str, Any]:
        """The dream's snapshot and the real game's seed and actions (bit-identical on restore)."""
        return {**self.dream.snapshot(), **self.real.state(), **(self.score.state() if self.score is not None else {})}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` captured."""
        self.dream.restore(state)
        self.real.load_state(state)
        if self.score is not None:
            self.score.load_state(state)
