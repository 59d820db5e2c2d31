"""The Game protocol every ground-truth game follows (built-in or a gymnasium adapter)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Game(Protocol):
    """A game that renders RGB frames and takes named discrete actions.

    Attributes:
        name: registry name, stored in episodes and checkpoints.
        frame_size: frames are ``(frame_size, frame_size, 3)`` uint8.
        action_names: one name per discrete action; index 0 is the no-op.
        key_bindings: action name -> pygame key names that trigger it.
        native_size: (height, width) of the game's own frames, so that a window can show the
            square model frames at the game's aspect ratio.
        tick_hz: steps per second at the game's own speed (play and serve tick at it unless
            ``fps=`` is given): Bouncer 30, Atari 15 (60 Hz, 4 frames a step).
    """

    name: str
    frame_size: int
    native_size: tuple[int, int]
    tick_hz: float
    action_names: tuple[str, ...]
    key_bindings: dict[str, list[str]]

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start a new episode and return its first frame."""
        ...

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """Apply ``action`` and return ``(frame, reward, done, info)``."""
        ...
