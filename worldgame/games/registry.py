"""The games worldgame can build: a fixed registry, never a class path read from a file.

A game config (``conf/game/*.yaml``, or ``game_config`` stored in a checkpoint or an episode)
names its game by ``_target_`` -- only the exact class paths below are recognised, as names, not
imported -- or by ``name``. Its other keys must be that game's settings, of the right type and in
range (the schemas here); anything else is refused with one line.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from worldgame.errors import WorldgameError
from worldgame.schema import SettingError, check, setting

MAX_FRAME_SIZE = 1024


@dataclass
class BouncerSettings:
    frame_size: int = setting(64, ge=32, le=MAX_FRAME_SIZE)
    num_orbs: int = setting(3, ge=0, le=64)
    lives: int = setting(5, ge=1, le=1_000_000)
    coin_chance: float = setting(0.05, ge=0.0, le=1.0)
    max_steps: int = setting(0, ge=0)
    infinite_lives: bool = False
    # the game's rules (games/bouncer.py RULES_VERSIONS): conf/game/bouncer.yaml asks for the current
    # one; a config without it was written before versions existed, so it means the original rules
    rules_version: int = setting(1, ge=1, le=2)


def _gym_id(value: Any) -> str | None:
    from worldgame.games.gym_adapter import GYM_ID  # the ids the adapter takes (imports PIL: on use)

    if isinstance(value, str) and GYM_ID.match(value) and len(value) <= 128:
        return None
    return "must be a registered gymnasium env id like ALE/Breakout-v5 or CartPole-v1 (no module path)"


def _gym_kwargs(value: Any) -> str | None:
    ok = isinstance(value, dict) and len(value) <= 32 and all(
        isinstance(k, str) and k.isidentifier() and k != "render_mode"
        and (v is None or isinstance(v, (bool, int, float, str)))
        for k, v in value.items()
    )
    return None if ok else "must map env option names to plain values (numbers, text, true/false)"


@dataclass
class GymSettings:
    id: str = setting("ALE/Breakout-v5", check=_gym_id)
    frame_size: int = setting(64, ge=8, le=MAX_FRAME_SIZE)
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"check": _gym_kwargs})


def _bouncer(**kw: Any) -> Any:
    from worldgame.games.bouncer import Bouncer

    return Bouncer(**kw)


def _gym(**kw: Any) -> Any:
    from worldgame.games.gym_adapter import GymGame

    return GymGame(**kw)


@dataclass(frozen=True)
class GameSpec:
    settings: type
    build: Callable[..., Any]


GAMES: dict[str, GameSpec] = {
    "bouncer": GameSpec(BouncerSettings, _bouncer),
    "gym": GameSpec(GymSettings, _gym),
}
# the class paths conf/game/*.yaml (and so every checkpoint and episode made so far) store
TARGETS = {
    "worldgame.games.bouncer.Bouncer": "bouncer",
    "worldgame.games.gym_adapter.GymGame": "gym",
}


def resolve(cfg: Mapping[str, Any], prefix: str = "game.") -> tuple[str, Any]:
    """(game name, checked settings) for a game config; SettingError/WorldgameError if it is not
    a known game with valid settings."""
    if not isinstance(cfg, Mapping):
        raise WorldgameError(f"the game config is a {type(cfg).__name__}, not a mapping of settings")
    keys = dict(cfg)
    _no_interpolation(keys, prefix)
    target, name = keys.pop("_target_", None), keys.pop("name", None)
    game = TARGETS.get(target) if isinstance(target, str) else None
    if target is not None and game is None:
        raise WorldgameError(
            f"{prefix}_target_={show_target(target)} is not a known game ({', '.join(GAMES)}); "
            "worldgame builds games only from its registry, never from a class path in a file"
        )
    if name is not None:
        if not isinstance(name, str) or name not in GAMES or (game is not None and game != name):
            raise SettingError(prefix + "name", name, f"choose one of {', '.join(GAMES)}")
        game = name
    if game is None:
        raise WorldgameError(f"the game config names no game; give name: one of {', '.join(GAMES)}")
    return game, check(GAMES[game].settings, keys, prefix=prefix, closed=True)


def _no_interpolation(value: Any, where: str) -> None:
    """Refuse ``${...}`` in a game config: the command line's are resolved before it gets here, so one
    left is a file's (a checkpoint's or an episode's), which must never read the environment or
    other settings through OmegaConf."""
    if isinstance(value, str) and "${" in value:
        raise WorldgameError(f"{where.rstrip('.')} holds an interpolation ({value[:40]!r}); a game config from a file "
                             "is taken literally, so this one was not written by worldgame")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _no_interpolation(v, f"{where}{k}.")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_interpolation(v, where)


def folder_name(game: str) -> str:
    """A game's short name for folders: ``bouncer``, ``gym:ALE/Boxing-v5`` -> ``boxing``,
    ``gym:CartPole-v1`` -> ``cartpole`` (data/<it>, checkpoints/<it>)."""
    name = game.removeprefix("gym:").split("/")[-1]
    return re.sub(r"-v\d+$", "", name).lower() or "game"


def key_bindings_for(cfg: Mapping[str, Any], action_names: list[str]) -> dict[str, list[str]]:
    """The keys of a game's actions, from its config and action names alone: no env is built
    (building an Atari env to save a checkpoint took seconds and printed the emulator's banner)."""
    game, _settings = resolve(cfg)
    if game == "bouncer":
        from worldgame.games.bouncer import KEY_BINDINGS

        return {name: list(keys) for name, keys in KEY_BINDINGS.items()}
    from worldgame.games.gym_adapter import SEEN_KEYS, key_bindings

    return key_bindings(action_names, SEEN_KEYS.get(getattr(_settings, "id", None)))


def tick_hz_of(cfg: Mapping[str, Any]) -> float:
    """A game's own steps per second from its config alone (data recorded before episodes carried
    it): Atari (ALE) 60 Hz over its frameskip (4 in v5), everything else 30."""
    game, settings = resolve(cfg)
    if game == "bouncer":
        return 30.0
    skip = (getattr(settings, "kwargs", None) or {}).get("frameskip", 4)
    ale = str(getattr(settings, "id", "")).startswith("ALE/")
    return 60.0 / skip if ale and type(skip) is int and skip > 0 else 30.0


def show_target(target: Any) -> str:
    text = repr(target)
    return text if len(text) <= 80 else text[:77] + "..."


def build(cfg: Mapping[str, Any], **overrides: Any) -> Any:
    """Build the game ``cfg`` names with its checked settings (``overrides`` win)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    if isinstance(plain, Mapping):
        plain = {**plain, **overrides}
    game, settings = resolve(plain)
    kwargs = asdict(GAMES[game].settings(**OmegaConf.to_container(settings)))
    return GAMES[game].build(**kwargs)
