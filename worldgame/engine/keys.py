"""The command table and the key rule, shared by the play window (controls.py) and the web page
(serve.py); free of pygame so the server does not load it.

A live control is one :class:`Command` here (its key, the engine control it needs, whether the
page gets a button for it, its help line) and one handler in ``tick_core.TickCore.command``.

The key rule (:func:`chosen_action`): the action is the binding whose keys are all held with the
most keys (so ``up+space`` beats ``up``); among equals, the one whose newest key was pressed last
wins (hold ← then press ↑: the player turns up). Nothing held → action 0.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from enum import Enum

from worldgame.settings import STEP_COUNTS

STEP_COUNTS_SHOWN = " ".join(map(str, STEP_COUNTS))  # the help line's spelling


class Command(str, Enum):
    """What a command key does (the value is its description)."""

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
    CONTEXT_NOISE = "context noise"
    AGENT = "agent / you at the controls"

    @property
    def wire(self) -> str:
        """Its name in the web page's ``{"type": "command", "value": ...}`` message."""
        return self.name.lower()


COMMAND_KEYS: dict[str, Command] = {  # key names as pygame.key.name spells them (the page maps its own to these)
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
    "n": Command.CONTEXT_NOISE,
    "g": Command.AGENT,  # DIAMOND's play tool hands over with M, which is the view key here
}
STEP_COMMANDS = {Command.STEPS_1: 1, Command.STEPS_2: 2, Command.STEPS_4: 4, Command.STEPS_8: 8}
# the engine's live control each command needs (engines list the ones they take in ``engine.live``)
LIVE_CONTROLS = {**dict.fromkeys(STEP_COMMANDS, "steps"), Command.FUSION: "fusion", Command.VIEW: "views",
                 Command.RESYNC: "resync", Command.CONTEXT_NOISE: "context_noise", Command.AGENT: "agent"}
# commands the page offers as a button (and its key) through the generic "command" message; steps,
# fusion, view, record, reset and re-sync have messages of their own
PAGE_COMMANDS: tuple[Command, ...] = (Command.CONTEXT_NOISE, Command.AGENT)
LIVE_HELP = [  # (the engine control a line needs, the line)
    ("steps", f"  {STEP_COUNTS_SHOWN}  steps         F  fusion"),
    ("views", "  M / Tab  view: Stream, LCM Steps,"),
    ("views", "           Temporal, World Model"),
    ("resync", "  Y  re-sync model to the real game"),
    ("context_noise", "  N  context noise: own, 0, 2x"),
    ("agent", "  G  the agent plays / you play"),
]


def keys_of(command: Command) -> list[str]:
    """The key names that trigger ``command``."""
    return [k for k, c in COMMAND_KEYS.items() if c is command]


def chosen_action(bindings: Sequence[tuple[int, frozenset[Hashable]]], held: Mapping[Hashable, int]) -> int:
    """THE key rule (module docstring). ``bindings``: (action, keys) with the longest combinations
    first; ``held``: key -> press order (higher = pressed later). Keys may be pygame codes or names.
    Allocates nothing but the loop's own iteration (it runs every tick)."""
    if not held:
        return 0
    best, best_size, best_order = 0, 0, -1
    for action, keys in bindings:
        if len(keys) < best_size:
            break
        if all(k in held for k in keys):
            order = max(held[k] for k in keys)
            if order > best_order:
                best, best_size, best_order = action, len(keys), order
    return best


def parse_bindings(action_names: Sequence[str], key_bindings: Mapping[str, Sequence[str]],
                   key: Callable[[str], Hashable] = str) -> list[tuple[int, frozenset]]:
    """``key_bindings`` (action name -> combos like ``"up+space"``) as :func:`chosen_action`'s
    bindings, longest first; ``key`` maps a key name to what the held mapping holds (a pygame code)."""
    names = list(action_names)
    bindings = []
    for name, combos in key_bindings.items():
        if name not in names:
            raise ValueError(f"key binding for unknown action {name!r}; actions are {', '.join(names)}")
        for combo in combos:
            bindings.append((names.index(name), frozenset(key(k.strip()) for k in combo.split("+"))))
    bindings.sort(key=lambda b: -len(b[1]))  # stable: among equal sizes the bindings' own order
    return bindings


class KeyMap:
    """Held key names (oldest press first, as the page sends them) → action, by :func:`chosen_action`."""

    def __init__(self, action_names: Sequence[str], key_bindings: Mapping[str, Sequence[str]]) -> None:
        known = {k: v for k, v in key_bindings.items() if k in action_names}  # a checkpoint's stray binding is ignored
        self.bindings = parse_bindings(action_names, known)
        self.keys = frozenset(k for _, keys in self.bindings for k in keys)

    def action(self, held: Iterable[str]) -> int:
        return chosen_action(self.bindings, {k: i for i, k in enumerate(held)})


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
    live = set(live)
    return lines + [line for control, line in LIVE_HELP if control in live]
