"""The table of live controls (engine/keys.py): one record per control, and everything that reads it
agrees with it: the tick core's dispatch, the help, the page's messages, the session columns,
regeneration's per-row setters and session_checks' ranges. No model is loaded here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from worldgame.data.episode import Episode
from worldgame.engine import session, session_checks
from worldgame.engine.engines import EngineStatus, FusionMode, StepResult
from worldgame.engine.keys import COLUMNS, CONTROLS, Command, help_lines, key_label
from worldgame.engine.session_checks import SessionFacts
from worldgame.engine.tick_core import TickCore
from worldgame.errors import WorldgameError

PATH = Path("crafted.wgep")


def test_each_control_is_one_record_the_core_the_window_and_the_page_can_run():
    names = [c.name for c in CONTROLS]
    keys = [k for c in CONTROLS for k in c.keys]
    assert len(set(names)) == len(names) and len(set(keys)) == len(keys)  # one wire name, one control per key
    for c in CONTROLS:
        assert isinstance(c.handler, str) and callable(getattr(TickCore, c.handler)), c.name
        assert (c.levels is None) == (c.current is None), c.name  # it cycles through levels from the current one
        assert not c.button or c.page is not None, c.name
    # every message the page builds from hello (protocol.page_controls) is one the server accepts
    from worldgame.commands.serve.protocol import page_controls, parse_message

    every = frozenset({"steps", "fusion", "views", "resync", "context_noise", "agent"})
    sent = []
    for entry in page_controls(every):
        kind = entry.get("send", "command")
        if kind == "command":
            sent.append({"type": kind, "value": entry["value"]})
        elif "arg" in entry:
            sent.append({"type": kind, "value": entry["arg"]})
        elif "levels" in entry:
            sent += [{"type": kind, "value": level} for level in entry["levels"]]
        else:
            sent.append({"type": kind})
    for message in sent:
        assert parse_message(json.dumps(message), frozenset()).type == message["type"], message
    assert {"type": "command", "value": "pause"} in sent and {"type": "view", "value": "world_model"} in sent
    assert [e for e in page_controls(every) if e["value"] == "pause"] == [{"value": "pause", "label": "pause", "keys": ["p"]}]
    assert not [e for e in page_controls(frozenset()) if e["value"] in ("fusion", "agent", "context_noise")]


def test_help_lists_each_available_control_from_the_table():
    live = {"steps", "fusion", "views", "resync"}
    text = "\n".join(help_lines(["NOOP", "LEFT"], {"LEFT": ["left"]}, live))
    for c in CONTROLS:
        shown = c.needs is None or c.needs in live
        assert (c.help.split("\n")[0] in text) == shown, c.name
        assert not shown or " / ".join(map(key_label, c.keys)) in text, c.name
    assert "  1 2 4 8  steps" in text and "M / Tab" in text and "Esc  quit" in text


class Stub:
    """An engine with steps and fusion only (no context noise, no agent)."""

    kind, live, frame_size, native_size = "stub", frozenset({"steps", "fusion"}), 4, None
    action_names, key_bindings = ["NOOP"], {}

    def __init__(self) -> None:
        self.steps, self.fusion, self.calls = 4, FusionMode.off, []

    def reset(self, seed: int) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)

    def step(self, action: int) -> StepResult:
        return StepResult(np.zeros((4, 4, 3), np.uint8))

    def set_steps(self, steps: int) -> None:
        self.steps = steps

    def set_fusion(self, mode: FusionMode) -> None:
        self.fusion = mode

    def want(self, wants: object) -> None:
        pass

    def status(self) -> EngineStatus:
        return EngineStatus(steps=self.steps, fusion=self.fusion)


def test_the_core_dispatches_through_the_table():
    engine = Stub()
    core = TickCore(engine, seed=0)
    core.start()
    core.command(Command.STEPS_2)
    core.command(Command.FUSION)
    assert (engine.steps, engine.fusion) == (2, FusionMode.pixel)  # off -> φ pixel, the F cycle
    core.command(Command.PAUSE)
    assert core.paused and core.next_event() is None and core.notice.startswith("paused")
    core.command(Command.STEP_ONCE)
    assert core.next_event() is not None and core.next_event() is None  # one frame, then held again
    core.command(Command.PAUSE)
    assert not core.paused and core.next_event() is not None
    core.command(Command.CONTEXT_NOISE)  # the engine lacks it: a notice, nothing called
    assert core.notice == "context noise: model engine only"
    core.command(Command.HELP)
    assert core.show_help


# --- the session columns ------------------------------------------------------------------------------


def _episode(rows: int = 4, drop: str = "", **columns: np.ndarray) -> Episode:
    base = {"lcm_steps": np.full(rows, 4, np.float32), "fusion_mode": np.zeros(rows, np.float32)}
    cols = {k: v for k, v in {**base, **columns}.items() if k != drop}
    return Episode(PATH, {}, np.zeros((rows, 4, 4, 3), np.uint8), np.zeros(rows, np.int64), np.zeros(rows, np.float32),
                   np.zeros(rows, bool), cols)


def test_every_control_with_a_column_is_recorded_ranged_and_set_on_regeneration():
    """Derived from the table: each control's session column is one of the columns a session records,
    holds a doc line, has a range session_checks enforces (inside passes, outside is refused naming
    the column) and an engine setter regeneration calls with every row's value."""
    from worldgame.engine.model_engine import ModelEngine

    columned = [c for c in CONTROLS if c.column is not None]
    assert {c.name for c in columned} >= {"steps_1", "fusion", "context_noise"}
    for control in columned:
        column = control.column
        assert column in COLUMNS and session.PER_FRAME[column.name] == column.doc, control.name
    for column in COLUMNS:
        assert callable(getattr(ModelEngine, column.setter)), column.setter  # the real engine's setter
        assert hasattr(EngineStatus(), column.status), column.status  # the status field the column records
        inside = _episode(**{column.name: np.full(4, column.low, np.float32)})
        session_checks._check_columns(PATH, inside, "lcm")
        for bad in (column.low - 1, column.high + 1, np.inf, *([np.nan] if column.nan == "refuse" else [])):
            rows = np.full(4, column.low, np.float32)
            rows[2] = bad
            with pytest.raises(WorldgameError, match=f"{column.name}.*cannot be regenerated"):
                session_checks._check_columns(PATH, _episode(**{column.name: rows}), "lcm")
        if column.required:
            with pytest.raises(WorldgameError, match=f"lack the {column.name} column"):
                session_checks._check_columns(PATH, _episode(drop=column.name), "lcm")

    class Recorder:
        """Every setter the table names, logging what regeneration sets before each row."""

        def __init__(self) -> None:
            self.backend, self.set = SessionFacts().backend, {c.setter: [] for c in COLUMNS}

        def __getattr__(self, name: str):
            if name in self.__dict__.get("set", {}):
                return self.set[name].append
            raise AttributeError(name)

        def load_state(self, state: dict) -> None:
            pass

        def step(self, action: int) -> StepResult:
            return StepResult(np.zeros((4, 4, 3), np.uint8))

    nan = np.nan
    rows = {"lcm_steps": [1, 2, 8, 4], "fusion_mode": [0, 2, 1, 0], "context_noise": [nan, nan, 0.0, 0.5],
            "chance": [nan, 3, nan, 7]}
    assert set(rows) == {c.name for c in COLUMNS}
    engine = Recorder()
    report = session._regenerate(_episode(**{k: np.array(v, np.float32) for k, v in rows.items()}), engine, {}, SessionFacts())
    assert report["identical"] and report["frames"] == 4
    for column in COLUMNS:
        values = np.array(rows[column.name][1:], np.float32)  # row 0 is the snapshot's
        if column.nan == "skip":
            values = values[~np.isnan(values)]
        got = engine.set[column.setter]
        assert len(got) == len(values) and all(
            (math.isnan(g) and math.isnan(v)) or g == v for g, v in zip(got, values.tolist(), strict=True)), (column.name, got)
        assert all(isinstance(g, int) for g in got) == column.whole, column.name


def test_status_columns_come_from_the_table():
    status = EngineStatus(steps=4, fusion=FusionMode.pixel, context_noise=0.05, chance=3.0)
    assert status.columns == {"lcm_steps": 4, "fusion_mode": 2, "context_noise": 0.05, "chance": 3.0}
    assert list(status.columns) == [c.name for c in COLUMNS]
    assert EngineStatus(steps=4, fusion=FusionMode.off).columns == {"lcm_steps": 4, "fusion_mode": 0}
    assert EngineStatus(score="3").columns == {}  # a real game records no settings
