"""Ground-truth games: the Game protocol, the built-in Bouncer and the gymnasium adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer, find_player
from worldgame.games.protocol import Game
from worldgame.games.registry import GAMES, build

__all__ = ["GAMES", "Bouncer", "Game", "find_player", "game_metadata", "make_game"]


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


def game_metadata(game: Game, game_config: Mapping[str, Any]) -> dict[str, Any]:
    """What episodes, sessions and checkpoints record about their game, so that later commands
    (train, play, eval, export) need not build the game to know its actions, keys and shape."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(game_config, resolve=True) if OmegaConf.is_config(game_config) else dict(game_config)
    if getattr(game, "rules_version", None) is not None:  # Bouncer: the rules it plays by, always recorded
        config.setdefault("rules_version", game.rules_version)
    return {
        "game": game.name,
        "game_config": config,
        "frame_size": game.frame_size,
        "native_size": list(getattr(game, "native_size", (game.frame_size, game.frame_size))),
        "tick_hz": float(getattr(game, "tick_hz", 30.0)),
        "action_names": list(game.action_names),
        "key_bindings": {name: list(keys) for name, keys in game.key_bindings.items()},
    }
