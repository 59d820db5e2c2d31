"""Runs any gymnasium env with a discrete action space and RGB frames as a worldgame Game."""

from __future__ import annotations

import atexit
import contextlib
import re
import weakref
from typing import Any

import numpy as np
from PIL import Image

from worldgame.errors import WorldgameError

# gymnasium turns an id like "some.module:Env-v0" into an import of some.module: no colon, ever
GYM_ID = re.compile(r"^(?:[A-Za-z0-9_-]+/)?[A-Za-z0-9_.-]+(?:-v\d+)?$")
# ALE action meanings are made of these words; each maps to a key
_WORD_KEYS = {"UP": "up", "DOWN": "down", "LEFT": "left", "RIGHT": "right", "FIRE": "space"}
# Games whose action names say another direction than the one the player sees: Pong's paddle
# (the Atari paddle controller turned) goes up on RIGHT and down on LEFT, so the arrows a player
# reaches for are added beside the named ones.
SEEN_KEYS = {"ALE/Pong-v5": {"right": "up", "left": "down"}}


class GymGame:
    """A gymnasium env seen through the Game protocol, frames resized to ``frame_size``.

    Args:
        id: gymnasium env id, e.g. ``ALE/Breakout-v5`` (needs the ``atari`` extra) or ``CartPole-v1``.
        frame_size: side of the square frames handed out (area-resampled from the env's frames).
        kwargs: extra keyword arguments for ``gymnasium.make``.
    """

    def __init__(self, id: str, frame_size: int = 64, kwargs: dict[str, Any] | None = None) -> None:
        if not isinstance(id, str) or not GYM_ID.match(id):
            # "pkg.module:Env-v0" would make gymnasium import pkg.module: ids only, never code paths
            raise WorldgameError(f"{id!r} is not a gymnasium env id like ALE/Breakout-v5 or CartPole-v1")
        try:
            import gymnasium as gym
        except ImportError as e:
            raise WorldgameError("gymnasium is not installed; run `pip install -e '.[atari]'`") from e
        if id.startswith("ALE/"):
            try:
                import ale_py

                gym.register_envs(ale_py)
            except ImportError as e:
                raise WorldgameError(f"{id} needs ale-py; run `pip install -e '.[atari]'`") from e
        try:
            self.env = gym.make(id, render_mode="rgb_array", **(kwargs or {}))
        except Exception as e:
            raise WorldgameError(f"gymnasium could not make {id!r}: {e}") from e
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise WorldgameError(f"{id} has a {type(self.env.action_space).__name__} action space; only Discrete is supported")
        self.name = f"gym:{id}"
        self.frame_size = frame_size
        meanings = getattr(self.env.unwrapped, "get_action_meanings", None)
        n = int(self.env.action_space.n)
        self.action_names = tuple(meanings()) if meanings else tuple(f"A{i}" for i in range(n))
        self.key_bindings = key_bindings(self.action_names, SEEN_KEYS.get(id))
        self.tick_hz = _tick_hz(self.env)
        shape = getattr(self.env.observation_space, "shape", None) or ()
        # Atari observations are (210, 160, 3); other envs' rendered frames set it on reset
        self.native_size = (int(shape[0]), int(shape[1])) if len(shape) == 3 and shape[-1] == 3 else (frame_size, frame_size)
        self.native_frame: np.ndarray | None = None
        # closed and dropped at exit, before the commands freeze the heap (factory.exit_quickly): an env
        # still alive then is reported by ALE's bindings as ~20 lines of "nanobind: leaked instances"
        atexit.register(_close_at_exit, weakref.ref(self))

    def close(self) -> None:
        """Close the env and drop it (idempotent)."""
        env, self.env = getattr(self, "env", None), None
        if env is not None:
            with contextlib.suppress(Exception):  # a half-made env may fail to close; exiting goes on
                env.close()

    def _frame(self, obs: Any) -> np.ndarray:
        img = obs if isinstance(obs, np.ndarray) and obs.ndim == 3 and obs.shape[-1] == 3 else self.env.render()
        if img is None:
            raise WorldgameError(f"{self.name} renders no RGB frames")
        self.native_size = (int(img.shape[0]), int(img.shape[1]))
        self.native_frame = img  # the env's own frame, for policies that look at the game (policy=tracker)
        return np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((self.frame_size,) * 2, Image.BOX))

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return self._frame(obs)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._frame(obs), float(reward), bool(terminated or truncated), dict(info)


def _close_at_exit(game: weakref.ref) -> None:
    alive = game()
    if alive is not None:
        alive.close()


def key_bindings(action_names: tuple[str, ...] | list[str], seen: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Key combos for ALE-style names (``UPFIRE`` -> ``up+space``); digits for anything else.
    ``seen`` maps a named key to the one that moves the sprite that way on screen (Pong:
    ``right`` -> ``up``): the seen combo is bound too, after the named one."""
    bindings: dict[str, list[str]] = {}
    for i, name in enumerate(action_names):
        rest, keys = name, []
        for word, key in _WORD_KEYS.items():
            if word in rest:
                keys.append(key)
                rest = rest.replace(word, "")
        if keys and not rest:
            bindings[name] = ["+".join(keys)]
            if seen and any(k in seen for k in keys):
                bindings[name].append("+".join(seen.get(k, k) for k in keys))
        elif name != "NOOP" and i < 10:
            bindings[name] = [str(i)]
    return bindings


def _tick_hz(env: Any) -> float:
    """Steps per second at the game's own speed: the Atari 2600 draws 60 frames a second and ALE
    steps ``frameskip`` of them (v5: 4, so 15 Hz); other envs say their ``render_fps``."""
    skip = getattr(env.unwrapped, "_frameskip", None)
    if isinstance(skip, int) and not isinstance(skip, bool) and skip > 0:
        return 60.0 / skip
    fps = env.metadata.get("render_fps")
    return float(fps) if isinstance(fps, (int, float)) and 0 < fps <= 1000 else 30.0
