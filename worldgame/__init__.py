"""worldgame: a neural game engine whose every frame is predicted by an action-conditioned LCM."""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep the CLI output to what the user asked for

from worldgame.errors import WorldgameError

__all__ = ["WorldgameError"]
__version__ = "0.1.0"
