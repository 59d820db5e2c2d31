"""Ground-truth games: the Game protocol, the built-in Bouncer and the gymnasium adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer, find_player
from worldgame.games.protocol import Game
from worldgame.games.registry import GAMES, build

__all__ = ["GAMES", "Bouncer", "Game", "find_player", "make_game"]


def make_game(cfg: Mapping[str, Any], **overrides: Any) -> Game:
    """Build a game from its config (``conf/game/*.yaml``, or the ``game_config`` a checkpoint or
    an episode stores), e.g. ``make_game(cfg.game)``.

    Only games in the registry (games/registry.py) are built, with their checked settings; a
    class path or setting it does not know is refused with one line, never imported.
    """
    try:
        return build(cfg, **overrides)
    except WorldgameError:
        raise
    except (ValueError, TypeError) as e:  # the game's own refusal of a setting combination
        raise WorldgameError(f"could not create the game: {e}") from e
