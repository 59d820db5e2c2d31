"""Shared fixtures. Headless SDL is set here, before any test imports pygame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def bouncer():
    """A built-in game, reset with seed 0."""
    from worldgame.games.bouncer import Bouncer

    game = Bouncer()
    game.reset(0)
    return game


@pytest.fixture
def run_cli():
    """Run ``python -m worldgame.cli <args>`` as a user would; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
        return subprocess.run(
            [sys.executable, "-m", "worldgame.cli", *args],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
