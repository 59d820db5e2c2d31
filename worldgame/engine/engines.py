"""What the play loop drives: the engine interface, what one tick returns, and the real game behind it.

Every engine answers the same calls, so the loop never asks which one it holds:

* ``reset(seed) -> frame`` and ``step(action) -> StepResult``;
* live controls, for the engines that list them in ``live``: ``set_steps`` ("steps"),
  ``set_fusion`` ("fusion"), ``resync`` ("resync"), ``set_context_noise`` to one of
  ``context_noise_levels`` ("context_noise"), and "views" when it can fill the views beyond
  Stream; ``want(Wants)`` says what the view on screen will draw, so nothing else is computed;
* ``status()``: a snapshot of the settings (steps, ``FusionMode``) and counters the HUD and the
  session recorder show;
* ``state()``: what a session needs to regenerate the frames to come (None: nothing to regenerate);
* ``agent_action()`` for the engines that list "agent": the checkpoint's agent's move on the frame
  on screen (its draws seeded by each ``reset``); ``agent_missing``: the notice when they do not.

:class:`Driver` turns a tick's event (step, reset, re-sync) into engine calls: the play loop and
session regeneration both go through it. The world-model engine is in ``model_engine.py``; this
module stays free of torch so ``play engine=real`` starts in a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from worldgame.data.episode import EVENT_RESET, EVENT_RESYNC
from worldgame.engine.keys import COLUMNS
from worldgame.games import Game
from worldgame.vocabulary import FusionMode  # the fusion modes (defined with the other shared words)

# the line a checkpoint without an agent gets, for agent=true (an error) and for the G key (a notice)
NO_AGENT = "checkpoint {} has no agent/: train one with `worldgame train stage=agent`"


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


@dataclass
class StepResult:
    """What one engine tick produced.

    Arrays may be views into buffers the engine reuses: they are valid until the next
    ``step``/``reset``; copy what you keep.

    Attributes:
        frame: the frame to show, (H, W, 3) uint8 (fused, for the model engine).
        reward: the game's reward (0 for the model, which predicts frames only).
        done: the game episode ended with this frame (never set by the model).
        info: the game's info dict (model engine: ``real``, the lockstep real game's last info).
        stages_ms: milliseconds per pipeline stage this engine ran (input, denoise, fusion,
            decode for the model, and game when the real game was stepped beside it; game for the
            real engine).
        step_frames: (S, H, W, 3) decoded estimate after each LCM step (only when wanted).
        step_timesteps: the scheduler timestep of each of those estimates.
        unfused: the frame before fusion (only when wanted).
        real: the real game's frame beside the dream (only when wanted, and on reset).
    """

    frame: np.ndarray
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    stages_ms: dict[str, float] = field(default_factory=dict)
    step_frames: np.ndarray | None = None
    step_timesteps: list[int] | None = None
    unfused: np.ndarray | None = None
    real: np.ndarray | None = None


@dataclass(frozen=True)
class Wants:
    """What the view on screen draws besides the frame; an engine computes only what is wanted."""

    step_frames: bool = False  # the decoded estimate after every LCM step (LCM Steps view)
    unfused: bool = False  # the frame before fusion (Temporal view)
    real: bool = False  # the real game beside the dream (World Model view)


@dataclass
class EngineStatus:
    """The engine's settings and counters as the HUD and the recorder show them (None: not this engine's)."""

    steps: int | None = None  # sampling steps per frame
    sampler: str | None = None  # the sampler's short name (models/schedulers.SAMPLER_LABELS)
    fusion: FusionMode | None = None
    fusion_weights: list[float] | None = None  # the weights the last fused frame used, newest first (fusion on)
    nonfinite: int = 0  # predictions holding NaN/inf (should stay 0)
    score: str | None = None  # the score of the game on screen (a dream has none of its own)
    real_score: str | None = None  # the real game's beside a dream, as of the last time it was shown
    context_noise: float | None = None  # the noise the dream adds to its context each step (N cycles it)
    chance: float | None = None  # the chance code the last frame was drawn with, packed (models/chance.pack)

    @property
    def columns(self) -> dict[str, float]:
        """The settings as per-frame session columns (what regeneration sets before each row): the
        table's columns (keys.COLUMNS) this status has; none where it lacks a required one (a real game)."""
        values = {c: getattr(self, c.status) for c in COLUMNS}
        if any(values[c] is None for c in COLUMNS if c.required):
            return {}
        return {c.name: v if c.encode is None else c.encode(v) for c, v in values.items() if v is not None}


class Engine(Protocol):
    """What the play loop drives (see the module docstring)."""

    kind: str  # "real" or "model"
    live: frozenset[str]  # the live controls it takes ("steps", "fusion", "views" ...: the ``needs`` of keys.CONTROLS)
    frame_size: int
    action_names: list[str]
    key_bindings: dict[str, list[str]]

    @property
    def native_size(self) -> object: ...  # the game's own (height, width), read after a reset

    def reset(self, seed: int) -> np.ndarray: ...
    def step(self, action: int) -> StepResult: ...
    def set_steps(self, steps: int) -> None: ...
    def set_fusion(self, mode: Any) -> None: ...
    def resync(self) -> None: ...
    def want(self, wants: Wants) -> None: ...
    def status(self) -> EngineStatus: ...
    def state(self) -> dict[str, Any] | None: ...


class Driver:
    """The one place a tick's event becomes engine calls: the play loop and ``session.regenerate``
    both tick through it, so a recorded session replays by the loop's own rules.

    Reset n (counting from ``resets``) starts the game at ``seed + n``.
    """

    def __init__(self, engine: Engine, seed: int, resets: int = 0) -> None:
        self.engine, self.seed, self.resets = engine, int(seed), int(resets)

    def tick(self, event: int, action: int) -> StepResult:
        """Run one tick: a reset (action ignored), a re-sync then a step, or a step."""
        if event == EVENT_RESET:
            frame = self.engine.reset(self.seed + self.resets)
            self.resets += 1
            return StepResult(frame, real=frame)  # a dream starts from the real game's frame
        if event == EVENT_RESYNC:
            self.engine.resync()
        return self.engine.step(action)


class RealEngine:
    """The ground-truth game itself, behind the engine interface (no live controls but the agent's).

    Args:
        game: the game.
        player: a models.agent.AgentPlayer (``play engine=real agent=true``): the checkpoint's agent
            on the real frames, through its autoencoder. None: only a human plays.
    """

    kind = "real"
    agent_missing = "the agent plays the real game only when play starts with agent=true (it loads the checkpoint)"

    def __init__(self, game: Game, player: Any = None) -> None:
        self.game = game
        self.player = player
        self.live: frozenset[str] = frozenset({"agent"}) if player is not None else frozenset()
        self.frame_size = game.frame_size
        self.action_names = list(game.action_names)
        self.key_bindings = {k: list(v) for k, v in game.key_bindings.items()}
        self._return, self._info = 0.0, {}
        self._frame: np.ndarray | None = None  # the frame on screen, which the agent acts on
        self._ticks, self._acted_at = 0, -1  # steps since the reset; the step the agent's window expects next

    @property
    def native_size(self) -> object:
        return getattr(self.game, "native_size", None)

    def reset(self, seed: int) -> np.ndarray:
        self._return, self._info = 0.0, {}
        self._frame, self._ticks, self._acted_at = self.game.reset(seed), 0, -1
        if self.player is not None:
            self.player.generator.manual_seed(seed)  # reset n: seed + n, as the game's
        return self._frame

    def step(self, action: int) -> StepResult:
        t0 = time.perf_counter()
        frame, reward, done, info = self.game.step(action)
        self._return, self._info = self._return + float(reward), info
        self._frame, self._ticks = frame, self._ticks + 1
        return StepResult(frame, float(reward), bool(done), info, {"game": ms_since(t0)})

    def agent_action(self) -> int:
        """The agent's move on the frame on screen (the last ``frames_seen`` real frames, encoded)."""
        assert self.player is not None and self._frame is not None
        if self._acted_at != self._ticks:  # a new game, or a human played since: its window starts at this frame
            self.player.ring = None
        self._acted_at = self._ticks + 1
        return self.player(self._frame)

    def set_steps(self, steps: int) -> None:
        raise NotImplementedError("the real game has no LCM steps")

    def set_fusion(self, mode: Any) -> None:
        raise NotImplementedError("the real game has no display fusion")

    def resync(self) -> None:
        raise NotImplementedError("the real game has nothing to re-sync")

    def want(self, wants: Wants) -> None:
        pass  # shows its frame only

    def status(self) -> EngineStatus:
        # the game's own score, or (gym games, which have none) the reward summed since the reset
        return EngineStatus(score=str(self._info.get("score", f"{self._return:g}")))

    def state(self) -> None:
        return None  # a real session is the game's own record: nothing to regenerate
