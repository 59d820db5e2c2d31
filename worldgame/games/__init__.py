"""Ground-truth games: the Game protocol, the built-in Bouncer and the gymnasium adapter."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer, find_player
from worldgame.games.protocol import Game

__all__ = ["Bouncer", "Game", "find_player", "make_game"]


def make_game(cfg: DictConfig | dict[str, Any], **overrides: Any) -> Game:
    """Build a game from its hydra config (``conf/game/*.yaml``), e.g. ``make_game(cfg.game)``."""
    try:
        return instantiate(cfg, **overrides)
    except WorldgameError:
        raise
    except Exception as e:  # instantiate wraps the game's own error; surface its message
        cause = e.__cause__ or e
        raise WorldgameError(f"could not create game {cfg.get('_target_', cfg)}: {cause}") from e
