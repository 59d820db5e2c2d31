"""The engines the play loop drives: the interface, its result, and the real game behind it.

Both engines answer ``reset(seed) -> frame`` and ``step(action) -> StepResult``; the loop never
needs to know which one it holds beyond the model-only live controls (steps, fusion, re-sync).
The world-model engine lives in ``model_engine.py`` (``ModelEngine`` is importable from here
too); this module stays free of torch so ``play engine=real`` starts in a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from worldgame.games import Game

if TYPE_CHECKING:
    import torch

    from worldgame.runtime.model_engine import ModelEngine

__all__ = ["Engine", "ModelEngine", "RealEngine", "StepResult", "configure_threads"]


def __getattr__(name: str) -> Any:
    if name == "ModelEngine":  # lazy: importing it loads torch and diffusers
        from worldgame.runtime.model_engine import ModelEngine

        return ModelEngine
    raise AttributeError(name)


def configure_threads(threads: int, device: torch.device | str) -> int:
    """Set torch's CPU threads: ``threads`` > 0 as given; 0 = auto, which is 1 when the model runs
    on the CPU. Measured on the 2-core target: 1 thread beats 2 for these small convolutions, and
    2 OpenMP threads collapse (seconds per frame) as soon as another process wants a core.
    Returns the thread count now in use."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _ms(t0: float) -> float:
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
        info: the game's info dict (model engine: ``real``, the lockstep real game's info).
        stages_ms: milliseconds per pipeline stage this engine ran (input, denoise, fusion,
            decode for the model; game for the real engine).
        step_frames: (S, H, W, 3) decoded estimate after each LCM step (LCM Steps view only).
        step_timesteps: the scheduler timestep of each of those estimates.
        unfused: the frame before fusion (Temporal view only).
        real: the lockstep real game's frame (model engine).
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


class Engine(Protocol):
    """What the play loop drives."""

    kind: str  # "real" or "model"
    frame_size: int
    action_names: list[str]
    key_bindings: dict[str, list[str]]

    def reset(self, seed: int) -> np.ndarray:
        """Start a new game from ``seed``; returns the first frame."""
        ...

    def step(self, action: int) -> StepResult:
        """Advance one frame with ``action``."""
        ...


class RealEngine:
    """The ground-truth game itself, behind the engine interface."""

    kind = "real"

    def __init__(self, game: Game) -> None:
        self.game = game
        self.frame_size = game.frame_size
        self.action_names = list(game.action_names)
        self.key_bindings = {k: list(v) for k, v in game.key_bindings.items()}

    def reset(self, seed: int) -> np.ndarray:
        return self.game.reset(seed)

    def step(self, action: int) -> StepResult:
        t0 = time.perf_counter()
        frame, reward, done, info = self.game.step(action)
        return StepResult(frame, float(reward), bool(done), info, {"game": _ms(t0)})
