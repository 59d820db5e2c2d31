"""Keyboard → game action and window commands.

Game keys come from the game's (or checkpoint's) ``key_bindings``: action name → pygame key names,
where one name may be a combination such as ``"up+space"``; the action is chosen by the one key
rule, ``keys.chosen_action`` (the web page's too).

Command keys are the live controls' keys, from the one table (engine/keys.py, ``COMMAND_KEYS``); they
win over a game binding of the same key. Held keys are tracked from KEYDOWN/KEYUP events rather than ``pygame.key.get_pressed`` so
that synthetic events (tests, bench, scripted input) behave exactly like a keyboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence

import pygame

from worldgame.engine.keys import (  # noqa: F401 -- the table of live controls, re-exported for the window's callers
    COMMAND_KEYS,
    CONTROLS,
    Command,
    Control,
    chosen_action,
    help_lines,
    parse_bindings,
)
from worldgame.errors import WorldgameError, shorten


def key_code(name: str) -> int:
    """pygame key code of a key name as ``pygame.key.name`` spells it ('up', 'a', 'space', '.')."""
    with warnings.catch_warnings():  # key_code works before pygame.init(); it only warns
        warnings.simplefilter("ignore")
        try:
            return pygame.key.key_code(name)
        except ValueError as e:
            raise ValueError(f"unknown key name {shorten(repr(name), 40)} in key bindings") from e


class Controls:
    """Tracks held keys and turns them into an action index and commands.

    Args:
        action_names: the game's actions; index 0 is the no-op.
        key_bindings: action name → key names (``"left"``, ``"a"``, ``"up+space"``).
    """

    def __init__(self, action_names: Sequence[str], key_bindings: Mapping[str, Sequence[str]]) -> None:
        self.action_names = list(action_names)
        try:
            self._bindings = parse_bindings(self.action_names, key_bindings, key_code)
        except ValueError as e:  # a checkpoint's worldgame.json names a key or action the window lacks
            raise WorldgameError(f"key_bindings: {shorten(e, 120)}; fix key_bindings in the checkpoint's worldgame.json "
                                 "(key names as pygame.key.name spells them: up, a, space)") from None
        self._commands = {key_code(k): c for k, c in COMMAND_KEYS.items()}
        self._held: dict[int, int] = {}  # key code -> press order
        self._presses = 0

    @property
    def held(self) -> frozenset[int]:
        """Key codes held now."""
        return frozenset(self._held)

    def release_all(self) -> None:
        """Forget held keys (focus lost, reset)."""
        self._held.clear()

    def handle(self, event: pygame.event.Event) -> Control | None:
        """Update held keys from one event; return the control it triggers, if any."""
        if event.type == pygame.QUIT:
            return Command.QUIT
        if event.type == pygame.KEYDOWN:
            command = self._commands.get(event.key)
            if command is not None:
                return command
            self._presses += 1
            self._held[event.key] = self._presses
        elif event.type == pygame.KEYUP:
            self._held.pop(event.key, None)
        elif event.type == pygame.WINDOWFOCUSLOST:  # keys released elsewhere never send KEYUP here
            self.release_all()
        return None

    def action(self) -> int:
        """The action the held keys select (0 when none matches): commands.chosen_action."""
        return chosen_action(self._bindings, self._held)


ScriptItem = Iterable[str] | Sequence[pygame.event.Event]


def scripted_events(script: Iterable[ScriptItem]) -> Iterator[list[pygame.event.Event]]:
    """Turn a per-frame script into the events to post before each frame.

    Each item is either a collection of key names held during that frame (``{"left"}``, ``()``;
    KEYDOWN/KEYUP events are generated for the keys that change from the previous item), or a
    list of ``pygame.event.Event`` posted as they are (``[]`` = no input that frame).
    """
    held: set[str] = set()
    for item in script:
        items = list(item)
        if items and isinstance(items[0], pygame.event.Event):
            yield list(items)  # type: ignore[arg-type]
            continue
        now = {str(k) for k in items}
        events = [key_event(pygame.KEYUP, k) for k in sorted(held - now)]
        events += [key_event(pygame.KEYDOWN, k) for k in sorted(now - held)]
        held = now
        yield events


def key_event(kind: int, name: str) -> pygame.event.Event:
    """A synthetic KEYDOWN/KEYUP event for key ``name``, as a real keyboard would send it."""
    code = key_code(name)
    return pygame.event.Event(kind, key=code, mod=0, unicode=name if len(name) == 1 else "", scancode=0)


def tap(name: str) -> list[pygame.event.Event]:
    """A KEYDOWN + KEYUP pair (one press of a command key) for a script item."""
    return [key_event(pygame.KEYDOWN, name), key_event(pygame.KEYUP, name)]
