"""Keyboard → game action and window commands.

Game keys come from the game's (or checkpoint's) ``key_bindings``: action name → pygame key names,
where one name may be a combination such as ``"up+space"``. The action is the binding whose keys
are all held with the most keys (so ``up+space`` beats ``up``); among equals, the one whose newest
key was pressed last wins (hold ← then press ↑: the player turns up). Nothing held → action 0.

Command keys are fixed and listed in :data:`COMMAND_KEYS`; they win over a game binding of the same
key. Held keys are tracked from KEYDOWN/KEYUP events rather than ``pygame.key.get_pressed`` so
that synthetic events (tests, bench, scripted input) behave exactly like a keyboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum

import pygame


class Command(str, Enum):
    """What a command key does in the play window."""

    QUIT = "quit"
    PAUSE = "pause"
    STEP_ONCE = "step one frame while paused"
    RESET = "reset"
    RECORD = "start/stop recording"
    HELP = "help"
    STEPS_1 = "1 sampling step"
    STEPS_2 = "2 sampling steps"
    STEPS_4 = "4 sampling steps"
    STEPS_8 = "8 sampling steps"
    FUSION = "cycle fusion"
    VIEW = "cycle view"
    RESYNC = "re-sync model to the real game"


COMMAND_KEYS: dict[str, Command] = {
    "escape": Command.QUIT,
    "p": Command.PAUSE,
    ".": Command.STEP_ONCE,
    "backspace": Command.RESET,
    "r": Command.RECORD,
    "h": Command.HELP,
    "1": Command.STEPS_1,
    "2": Command.STEPS_2,
    "4": Command.STEPS_4,
    "8": Command.STEPS_8,
    "f": Command.FUSION,
    "m": Command.VIEW,
    "tab": Command.VIEW,
    "y": Command.RESYNC,
}
STEP_COMMANDS = {Command.STEPS_1: 1, Command.STEPS_2: 2, Command.STEPS_4: 4, Command.STEPS_8: 8}
# the engine's live control each command needs (engines list the ones they take in ``engine.live``)
LIVE_CONTROLS = {**dict.fromkeys(STEP_COMMANDS, "steps"), Command.FUSION: "fusion", Command.VIEW: "views",
                 Command.RESYNC: "resync"}


def key_code(name: str) -> int:
    """pygame key code of a key name as ``pygame.key.name`` spells it ('up', 'a', 'space', '.')."""
    with warnings.catch_warnings():  # key_code works before pygame.init(); it only warns
        warnings.simplefilter("ignore")
        try:
            return pygame.key.key_code(name)
        except ValueError as e:
            raise ValueError(f"unknown key name {name!r} in key bindings") from e


class Controls:
    """Tracks held keys and turns them into an action index and commands.

    Args:
        action_names: the game's actions; index 0 is the no-op.
        key_bindings: action name → key names (``"left"``, ``"a"``, ``"up+space"``).
    """

    def __init__(self, action_names: Sequence[str], key_bindings: Mapping[str, Sequence[str]]) -> None:
        self.action_names = list(action_names)
        self._bindings: list[tuple[int, frozenset[int]]] = []
        for name, keys in key_bindings.items():
            if name not in self.action_names:
                raise ValueError(f"key binding for unknown action {name!r}; actions are {', '.join(self.action_names)}")
            for combo in keys:
                codes = frozenset(key_code(k.strip()) for k in combo.split("+"))
                self._bindings.append((self.action_names.index(name), codes))
        # longest combos first, so the scan below can stop at the first size that matches
        self._bindings.sort(key=lambda b: -len(b[1]))
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

    def handle(self, event: pygame.event.Event) -> Command | None:
        """Update held keys from one event; return the command it triggers, if any."""
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
        """The action the held keys select (0 when none matches)."""
        if not self._held:
            return 0
        best, best_size, best_order = 0, 0, -1
        for action, codes in self._bindings:
            if len(codes) < best_size:
                break
            if all(c in self._held for c in codes):
                order = max(self._held[c] for c in codes)
                if order > best_order:
                    best, best_size, best_order = action, len(codes), order
        return best


def help_lines(action_names: Sequence[str], key_bindings: Mapping[str, Sequence[str]], live: Iterable[str] = ()) -> list[str]:
    """The H overlay's text: game keys from the bindings, then the command keys (the live ones
    where the engine takes live controls)."""
    lines = ["keys"]
    for name in action_names[1:]:
        if name in key_bindings:
            lines.append(f"  {name}: {' / '.join(key_bindings[name])}")
    lines += [
        "  P  pause     .  one frame (paused)",
        "  Backspace reset     R  record on/off",
        "  H  this help     Esc  quit",
    ]
    if live:
        lines += [
            "  1 2 4 8  steps         F  fusion",
            "  M / Tab  view: Stream, LCM Steps,",
            "           Temporal, World Model",
            "  Y  re-sync model to the real game",
        ]
    return lines


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
