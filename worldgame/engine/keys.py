"""THE table of live controls, and the key rule; shared by the play window (frontend/controls.py),
the tick core (tick_core.py), the web page (commands/serve: its hello carries the page-facing part,
app.js builds its keys and buttons from it) and the sessions (session.py, session_checks.py); free
of pygame and torch so the server and ``play engine=real`` do not load them.

A live control is one :class:`Control` record in :class:`Command`: its wire name, its keys, what
the page sends for it and whether it gets a button, the engine capability it needs, its handler (a
:class:`~worldgame.engine.tick_core.TickCore` method, called with its fixed ``value``, with the
level after the current one where it cycles, or with nothing), its HUD and help lines and, where
its setting is recorded per frame, its session :class:`Column` (the status field recorded, the
engine setter regeneration calls, the valid range). Everything else reads the table:

* ``TickCore.command`` dispatches a control to its handler (the engine must list ``needs``);
* :func:`help_lines` (the window's H overlay) and ``TickCore.settings_shown`` (the HUD);
* the page's hello (``commands/serve/protocol.py``): keys, wire names, button labels, the message
  each sends; ``parse_message`` accepts the ``command`` controls by wire name;
* the session: ``EngineStatus.columns`` (what a row records), ``session.PER_FRAME``,
  ``session._regenerate`` (each column's setter before each row) and ``session_checks`` (its range).

A new live control is a record here and, where no core method does it yet, its handler in
tick_core.py.

The key rule (:func:`chosen_action`): the action is the binding whose keys are all held with the
most keys (so ``up+space`` beats ``up``); among equals, the one whose newest key was pressed last
wins (hold ← then press ↑: the player turns up). Nothing held → action 0.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worldgame.settings import STEP_COUNTS, TEACHER_STEPS_MAX
from worldgame.vocabulary import FusionMode, View

MAX_CONTEXT_NOISE = 10.0  # the context_noise column's ceiling: as checkpoint_checks allows for a checkpoint's own
CHANCE_CODES = 1 << 24  # packed chance codes (models/chance.pack) stay below this


@dataclass(frozen=True)
class Column:
    """A per-frame session column recording a setting (``t_<name>`` in the episode file).

    ``EngineStatus.columns`` writes it from the status field ``status`` (``encode``d), regeneration
    calls the engine's ``setter`` with each row's value before ticking it (an int where ``whole``),
    and session_checks refuses a session whose rows 1.. hold a value outside ``low..high``."""

    name: str
    doc: str  # its line in the session's ``per_frame`` metadata
    status: str  # the EngineStatus field it records
    setter: str  # the engine method regeneration calls with the row's value
    low: float
    high: float
    whole: bool = False  # whole numbers only
    required: bool = False  # every model session has it (a status without it records no setting columns)
    nan: str = "refuse"  # a NaN row: "refuse" the session, "skip" the setter, or "pass" it on (the setter knows it)
    sampler_steps: bool = False  # also one of the session's sampler's step counts (settings.check_steps)
    encode: Callable[[Any], Any] | None = None  # the status value as the column's number (None: as it is)


@dataclass(frozen=True)
class Control:
    """One live control: everything the window, the page, the tick core and the sessions know of it.

    Attributes:
        name: its wire name (the page's ``{"type": "command", "value": name}``) and handle.
        label: what it is, short: the page's button and key line, "<label>: model engine only".
        keys: key names as pygame.key.name spells them (the page maps its own to these).
        handler: the TickCore method it calls (or a function of the core, called as ``handler(core, *args)``).
        value: the handler's one fixed argument (steps 1/2/4/8), or None.
        levels: where it cycles, the levels in order (or a function of the core giving them: the
            engine's context noise levels); the handler gets the one after ``current``.
        current: where it cycles, its current level as ``current(core, status)``.
        needs: the engine capability it needs (``engine.live``; None: every engine).
        page: the page message it is sent as: ``"command"`` (by wire name), the name of the
            protocol's own message for it (``steps``, ``view``, ``record`` ...), or None: window only.
        button: the page shows a button for it.
        help: its line in the H overlay (controls with the same line share it, their keys joined).
        hud: its setting as the HUD's mode line (and the page's) shows it: ``hud(current)`` or None.
        column: the session column recording its setting per frame, or None.
    """

    name: str
    label: str
    keys: tuple[str, ...]
    handler: str | Callable[..., None]
    value: Any = None
    levels: tuple[Any, ...] | Callable[[Any], Sequence[Any]] | None = None
    current: Callable[[Any, Any], Any] | None = None
    needs: str | None = None
    page: str | None = None
    button: bool = False
    help: str | None = None
    hud: Callable[[Any], str | None] | None = None
    column: Column | None = None

    def args(self, core: Any, status: Any) -> tuple[Any, ...]:
        """The handler's arguments: the fixed value, the next level (cycling), or none."""
        if self.current is not None:
            levels = list(self.levels(core) if callable(self.levels) else self.levels or ())
            return (levels[(levels.index(self.current(core, status)) + 1) % len(levels)],)
        return () if self.value is None else (self.value,)


def _cycle(first: Any) -> tuple[Any, ...]:
    """The levels ``first.next()`` cycles through, from ``first``."""
    levels = [first]
    while (level := levels[-1].next()) != first:
        levels.append(level)
    return tuple(levels)


TOGGLE = (False, True)
STEPS_COLUMN = Column("lcm_steps", "LCM sampling steps used for this frame (model sessions)", "steps", "set_steps",
                      1, TEACHER_STEPS_MAX, whole=True, required=True, sampler_steps=True)
FUSION_COLUMN = Column("fusion_mode", "display fusion: 0 off, 1 latent, 2 pixel (model sessions)", "fusion", "set_fusion",
                       0, len(FusionMode) - 1, whole=True, required=True, encode=lambda mode: mode.code)
CONTEXT_NOISE_COLUMN = Column("context_noise", "the context noise the model stepped with (model sessions; before it: "
                              "the checkpoint's)", "context_noise", "set_context_noise", 0, MAX_CONTEXT_NOISE, nan="pass")
# a drawn setting, not a live control: recorded so regeneration replays the draw whatever the backend's rounding
CHANCE_COLUMN = Column("chance", "the chance code the frame was drawn with, sum of code[g] * V**g (checkpoints with a "
                       "chance code)", "chance", "force_chance", 0, CHANCE_CODES - 1, whole=True, nan="skip")


def _steps(n: int) -> Control:
    return Control(f"steps_{n}", "steps", (str(n),), "set_steps", value=n, needs="steps", page="steps",
                   help="steps", column=STEPS_COLUMN)


class Command:
    """THE table: one :class:`Control` per live control (``Command.PAUSE`` ...), in the order the
    help overlay, the page's buttons and its key line show them; :data:`CONTROLS` lists them."""

    QUIT = Control("quit", "quit", ("escape",), "request_quit", help="quit")
    HELP = Control("help", "help", ("h",), "set_help", levels=TOGGLE, current=lambda core, _: core.show_help,
                   help="this help")
    PAUSE = Control("pause", "pause", ("p",), "set_paused", levels=TOGGLE, current=lambda core, _: core.paused,
                    page="command", button=True, help="pause / go on")
    STEP_ONCE = Control("step_once", "one frame (paused)", (".",), "step_once", page="command",
                        help="one frame while paused")
    STEPS_1, STEPS_2, STEPS_4, STEPS_8 = (_steps(n) for n in STEP_COUNTS)
    FUSION = Control("fusion", "fusion", ("f",), "set_fusion", levels=_cycle(FusionMode.off),
                     current=lambda _, status: status.fusion, needs="fusion", page="fusion",
                     help="fusion: off, φ pixel, φ latent", column=FUSION_COLUMN)
    VIEW = Control("view", "view", ("m", "tab"), "set_view", levels=tuple(View), current=lambda core, _: core.view,
                   needs="views", page="view", help="view: Stream, Steps,\nTemporal, World Model")
    RESET = Control("reset", "reset", ("backspace",), "request_reset", page="reset", button=True, help="reset")
    RESYNC = Control("resync", "re-sync", ("y",), "request_resync", needs="resync", page="resync", button=True,
                     help="re-sync model to the real game")
    RECORD = Control("record", "record", ("r",), "set_recording", levels=TOGGLE, current=lambda core, _: core.recording,
                     page="record", button=True, help="record on/off")
    # the checkpoint's own, none, twice: how much the dream leans on its past
    CONTEXT_NOISE = Control("context_noise", "context noise", ("n",), "set_context_noise",
                            levels=lambda core: core.engine.context_noise_levels,
                            current=lambda _, status: status.context_noise, needs="context_noise", page="command",
                            button=True, help="context noise: own, 0, 2x",
                            hud=lambda level: None if level is None else f"context noise {level:g}",
                            column=CONTEXT_NOISE_COLUMN)
    # G: DIAMOND's play tool hands over with M, which is the view key here
    AGENT = Control("agent", "agent / you at the controls", ("g",), "set_agent", levels=TOGGLE,
                    current=lambda core, _: core.agent_playing, needs="agent", page="command", button=True,
                    help="the agent plays / you play")


CONTROLS: tuple[Control, ...] = tuple(v for v in vars(Command).values() if isinstance(v, Control))
COMMAND_KEYS: dict[str, Control] = {k: c for c in CONTROLS for k in c.keys}  # key name -> control (the window's map)
# every per-frame setting column a model session holds, in the order regeneration sets them
COLUMNS: tuple[Column, ...] = (*dict.fromkeys(c.column for c in CONTROLS if c.column is not None), CHANCE_COLUMN)
KEY_LABELS = {"escape": "Esc", "backspace": "Backspace", "tab": "Tab"}


def available(control: Control, live: Iterable[str]) -> bool:
    """Whether an engine taking the live controls ``live`` has ``control``."""
    return control.needs is None or control.needs in set(live)


def key_label(key: str) -> str:
    """A key name as the help shows it (``escape`` -> ``Esc``, ``n`` -> ``N``)."""
    return KEY_LABELS.get(key, key.upper() if len(key) == 1 else key.capitalize())


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
            raise ValueError(f"key binding for unknown action {str(name)[:40]!r}; actions are {', '.join(names)[:200]}")
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
    """The H overlay's text: game keys from the bindings, then each control's help line (those the
    engine taking the live controls ``live`` has), from the table."""
    lines = ["keys"]
    for name in action_names[1:]:
        if name in key_bindings:
            lines.append(f"  {name}: {' / '.join(key_bindings[name])}")
    live = set(live)
    shown: dict[str, list[str]] = {}  # a help line -> the keys of the controls sharing it
    for control in CONTROLS:
        if control.help is not None and available(control, live):
            shown.setdefault(control.help, []).append(" / ".join(map(key_label, control.keys)))
    for text, keys in shown.items():
        first, *more = text.split("\n")
        lead = f"  {' '.join(keys)}  "
        lines += [lead + first, *(" " * len(lead) + line for line in more)]
    return lines
