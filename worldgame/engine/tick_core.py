"""THE tick core: one play session with no UI, which the window loop (loop.py: pacing, pygame,
TSR) and the web server's connection (serve.py: sockets, JSON) both drive.

It owns what a tick decides and what it leaves behind: the pending events (reset, re-sync, one
frame while paused) and live settings (steps, fusion, view, pause, context noise), the
``Driver.tick`` call, what the view wants from the engine, the panels to draw, the recorder and the
frame statistics. A front-end reads input its own way, turns it into controls (keys.py's
table) or setter calls, and per tick::

    event, action, result = core.advance(keys)  # event None: paused or the GAME OVER screen (the
                                                # last frame again); the action the agent's while it
                                                # has the controls, else the keys'; the engine ticks
    ...present core.panels(result)...
    core.finish(result, event, action, stages, latency, presented_at)   # stats, recording, game over

A new live control is a record of the table (keys.py: its keys, page message, column ...) naming its
handler, a method here; :meth:`TickCore.command` dispatches through the table.

Game over ends like an arcade game's: the last frame stays on screen under a GAME OVER box with the
final score for ``game_over_ticks`` ticks (any game key ends it sooner), then a new game starts from
real frames. Nothing is stepped or recorded meanwhile, so a session holds the game-over row and then
the reset, exactly as regeneration replays them.

The agent (engines listing "agent"): while it has the controls (G, or ``agent=true``) its action
replaces the keys' and is the one recorded, so a regenerated session needs no agent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from worldgame.data.episode import EVENT_RESET, EVENT_RESYNC, EVENT_STEP
from worldgame.engine.engines import Driver, Engine, EngineStatus, FusionMode, StepResult, ms_since
from worldgame.engine.hud import HudState
from worldgame.engine.keys import CONTROLS, Control
from worldgame.engine.session import SessionRecorder
from worldgame.engine.stats import FrameStats, RunStats
from worldgame.engine.views import Panel, View, detail, panels, wants

NOTICE_S = 2.5  # how long a notice ("fusion φ pixel", "saved ...") stays in the HUD


class TickCore:
    """One play session's state and rules, UI-free.

    Args:
        engine: anything with the engines.Engine interface.
        seed: reset n of this session uses ``seed + n`` (so sessions can be regenerated).
        view: the initial view (engines without the "views" control always show Stream).
        recorder: where recordings go (None = recording unavailable).
        on_layout: called when the number or size of the panels may have changed (the window resizes).
        agent: the checkpoint's agent has the controls from the start (attract mode).
        game_over_ticks: ticks the GAME OVER screen holds the last frame (0: a new game at once).
    """

    def __init__(self, engine: Engine, seed: int, view: View | str = View.stream, recorder: SessionRecorder | None = None,
                 on_layout: Callable[[], None] | None = None, agent: bool = False, game_over_ticks: int = 0) -> None:
        self.engine = engine
        self.driver = Driver(engine, seed)
        self.seed = int(seed)
        self.view = View.parse(view) if "views" in engine.live else View.stream
        self.recorder = recorder
        self.on_layout = on_layout
        self.stats = FrameStats()  # the HUD's rolling window
        self.run_stats = RunStats()  # the whole run, for the summary
        self.sessions: list[str] = []  # recordings saved
        self.paused = self.show_help = self.quit = False
        self.frames = 0  # frames stepped (the reset that starts the session not counted)
        self.last: StepResult | None = None
        self.last_action = 0
        self.notice, self.notice_until = "", 0.0
        self.changed = False  # something the HUD shows changed: redraw it now
        self.record_note: str | None = None  # the last recording start/stop line, for a front-end to pass on
        self._step_once = self._reset_pending = self._resync_pending = self._game_over = False
        self.agent_playing = agent and "agent" in engine.live
        self._agent_ms: float | None = None  # the agent's forward this tick (its own stage)
        self.game_over_ticks = max(0, int(game_over_ticks))
        self.game_over_left = 0  # ticks the GAME OVER screen still holds (0: not shown)
        self._posted: deque[tuple[Callable[..., Any], tuple]] = deque()

    # --- the tick ---------------------------------------------------------------------------------
    def start(self) -> StepResult:
        """The first tick: reset the game (seed + 0) and tell the engine what the view draws."""
        self.last = self.driver.tick(EVENT_RESET, 0)
        self.apply_view()  # after the reset: a gym game may know its own frame size only from its first frame
        return self.last

    def advance(self, keys: int) -> tuple[int | None, int, StepResult]:
        """This tick's engine part, the one sequence the window and the page both run: the event,
        the action it plays (the agent's while it has the controls, else ``keys``) and the frame.
        While paused or on the GAME OVER screen: (None, keys, the last frame), nothing stepped."""
        event = self.next_event()
        if event is None:
            return None, keys, self.last
        action = self.action(event, keys)
        return event, action, self.step(event, action)

    def next_event(self) -> int | None:
        """The event this tick runs: a reset (asked for, or after game over), a re-sync, a step, or
        None while paused (a re-sync asked for while paused waits for the next stepped frame)."""
        if self._reset_pending or self._game_over:
            self._reset_pending = self._game_over = self._resync_pending = False
            self.game_over_left = 0
            return EVENT_RESET
        if self.paused and not self._step_once:
            return None
        if self.game_over_left:  # the GAME OVER screen: the last frame stays, its last tick starts a new game
            self.game_over_left -= 1
            self._game_over, self._step_once = self.game_over_left == 0, False
            return None
        event = EVENT_RESYNC if self._resync_pending else EVENT_STEP
        self._step_once = self._resync_pending = False
        return event

    def action(self, event: int, keys: int) -> int:
        """The action this tick plays: the agent's while it has the controls (on the frame on
        screen), else ``keys`` (the keyboard's or the page's); a reset plays none."""
        self._agent_ms = None
        if event == EVENT_RESET or not self.agent_playing:
            return keys
        t0 = time.perf_counter()
        action = self.engine.agent_action()  # type: ignore[attr-defined]  # engines listing "agent" have it
        self._agent_ms = ms_since(t0)
        return action

    def step(self, event: int, action: int) -> StepResult:
        """Tick the engine (a reset ignores ``action``)."""
        result = self.driver.tick(event, 0 if event == EVENT_RESET else action)
        if self._agent_ms is not None:
            result.stages_ms["agent"] = self._agent_ms
        return result

    def finish(self, result: StepResult, event: int, action: int, stages: dict[str, float], latency_ms: float | None,
               presented_at: float, interval_ms: float | None) -> None:
        """Book a presented frame: statistics, the recording's row, game over."""
        action = 0 if event == EVENT_RESET else action
        self.stats.add(stages, latency_ms or 0.0, interval_ms)
        self.run_stats.add(stages, latency_ms or 0.0, presented_at)
        self.frames += 1
        self.last, self.last_action = result, action
        if result.done and self.game_over_ticks:
            self.game_over_left, self.changed = self.game_over_ticks, True
        elif result.done:
            self._game_over = True
            self.say("game over: a new game starts")
        if self.recorder is not None and self.recorder.active:
            columns = {**stages, **({} if latency_ms is None else {"latency": latency_ms}), **self.engine.status().columns}
            if self.engine.kind == "real" and "appeared" in result.info:  # as `collect` writes it: training data
                columns["appeared"] = float(result.info["appeared"])
            self.recorder.add(result.frame, action, result.reward, result.done, columns, event)

    def panels(self, result: StepResult | None = None, status: EngineStatus | None = None) -> list[Panel]:
        """The frames the current view draws for ``result`` (the last one by default)."""
        result = result or self.last
        assert result is not None, "panels before the first tick"
        return panels(self.view, result, status or self.engine.status())

    # --- commands from another thread (the web server's event loop) --------------------------------
    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` (a command or setter of this core) for :meth:`run_posted`, called in the
        thread that owns the engine."""
        self._posted.append((fn, args))

    def run_posted(self) -> None:
        while self._posted:
            fn, args = self._posted.popleft()
            fn(*args)

    # --- commands ---------------------------------------------------------------------------------
    def command(self, control: Control) -> None:
        """What a control's key (or the page's button) does: its handler, from the table (keys.py),
        where the engine has what it needs (else a notice: the engine's own word, or "model engine only")."""
        if control.needs is not None and control.needs not in self.engine.live:
            self.say(getattr(self.engine, f"{control.needs}_missing", f"{control.label}: model engine only"))
        else:
            handler = getattr(self, control.handler) if isinstance(control.handler, str) else partial(control.handler, self)
            handler(*control.args(self, self.engine.status() if control.current is not None else None))
        self.changed = True

    def request_quit(self) -> None:
        self.quit = True

    def set_help(self, on: bool) -> None:
        self.show_help = on

    def set_paused(self, on: bool) -> None:
        """Hold the frame on screen (nothing is stepped or recorded) or go on."""
        if on != self.paused:
            self.paused = on
            self.say("paused: P goes on, '.' steps one frame" if on else "playing")

    def step_once(self) -> None:
        """Step one frame while paused (a no-op while playing)."""
        self._step_once = self.paused

    def any_key(self) -> None:
        """A game key went down: it ends the GAME OVER screen (the next :meth:`next_event` starts a new game)."""
        if self.game_over_left:
            self.game_over_left, self._game_over = 0, True

    def set_agent(self, on: bool) -> None:
        """Hand the controls to the agent or back to the player (a notice where there is no agent)."""
        if "agent" not in self.engine.live:
            self.say(getattr(self.engine, "agent_missing", "no agent here"))
            return
        self.agent_playing = on
        self.say("the agent plays: G takes the controls" if on else "you play: G hands over to the agent")

    def set_steps(self, steps: int) -> None:
        self.engine.set_steps(steps)
        self.stats.clear()  # the numbers now describe the new setting
        self.apply_view()  # the LCM Steps view shows one panel per step
        sampler = self.engine.status().sampler
        self.say(f"{steps} {sampler + ' ' if sampler else ''}step{'s' if steps > 1 else ''}")

    def set_fusion(self, mode: FusionMode | str) -> None:
        self.engine.set_fusion(FusionMode.parse(mode))
        self.stats.clear()
        self.say(f"fusion {FusionMode.parse(mode).label}")

    def set_context_noise(self, level: float) -> None:
        """How much the dream leans on its past: one of the engine's ``context_noise_levels``."""
        self.engine.set_context_noise(level)  # type: ignore[attr-defined]  # engines listing "context_noise" have it
        own = self.engine.context_noise_levels[0]  # type: ignore[attr-defined]
        self.say(f"context noise {level:g}" + (" (the checkpoint's)" if level == own else ""))

    def set_view(self, view: View | str) -> None:
        self.view = View.parse(view)
        self.apply_view()
        self.say(f"view {self.view.label}")

    def request_reset(self) -> None:
        self._reset_pending = True

    def request_resync(self) -> None:
        if not self._reset_pending:  # a reset starts from the real game anyway
            self._resync_pending = True
            self.say("model re-synced to the real game")

    # --- recording --------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.recorder is not None and self.recorder.active

    def set_recording(self, on: bool) -> None:
        """Start recording from the frame on screen, or stop and save (a no-op when already so)."""
        if self.recorder is None:
            self.say("recording is not available here")
        elif not on:
            self.stop_recording()
        elif not self.recorder.active and self.last is not None:
            path = self.recorder.start(self.engine, self.last.frame, self.last_action, self.seed, self.driver.resets)
            self.say(f"recording to {path}", record=True)

    def stop_recording(self) -> None:
        if self.recorder is not None and self.recorder.active:
            path = self.recorder.stop()
            if path is not None:
                self.sessions.append(str(path))
                self.say(f"saved {path}", record=True)

    # --- what the front-ends show -----------------------------------------------------------------
    def apply_view(self) -> None:
        """Tell the engine what the view draws (and the front-end that the layout may change)."""
        self.engine.want(wants(self.view))
        if self.on_layout is not None:
            self.on_layout()

    def say(self, text: str, record: bool = False) -> None:
        """Show ``text`` in the HUD for a while (``record``: it is about the recording)."""
        self.notice, self.notice_until = text, time.perf_counter() + NOTICE_S
        self.changed = True
        if record:
            self.record_note = text

    def settings_shown(self, status: EngineStatus) -> list[str]:
        """Live settings the HUD's mode line shows besides steps, fusion and view."""
        shown = (c.hud(c.current(self, status)) for c in CONTROLS if c.hud is not None and c.current is not None)
        return [text for text in shown if text is not None]

    def score_shown(self, status: EngineStatus) -> tuple[str, str | None]:
        """(label, text) of the score the HUD and the page show: the engine's (a dream's own, from its
        event head), and in the World Model view the real game's beside it."""
        if self.view is View.world_model and status.real_score is not None:  # the real game is on screen too
            return "dream score", f"{status.score} | real game {status.real_score}"
        return "score", status.score

    @property
    def player(self) -> str | None:
        """Who has the controls, as the HUD and the page say it (None: no agent to hand them to)."""
        return None if "agent" not in self.engine.live else "agent" if self.agent_playing else "you"

    @property
    def game_over_shown(self) -> bool:
        """Whether the GAME OVER screen is up (its last tick included: the new game starts next tick)."""
        return bool(self.game_over_left) or (self._game_over and self.game_over_ticks > 0)

    def game_over_lines(self, status: EngineStatus | None = None) -> list[str] | None:
        """The GAME OVER box's text while it is shown (None otherwise): the final score and what ends it."""
        if not self.game_over_shown:
            return None
        label, score = self.score_shown(status or self.engine.status())
        after = "a new game starts" if self.agent_playing else "any key: a new game"
        return ["GAME OVER", *([f"{label} {score}"] if score is not None else []), after]

    def hud_state(self, now: float, target_fps: float, status: EngineStatus | None = None, display_hz: float = 0.0,
                  display_fps: float = 0.0) -> HudState:
        status = status or self.engine.status()
        score_label, score = self.score_shown(status)
        return HudState(
            engine=self.engine.kind,
            target_fps=target_fps,
            action=self.engine.action_names[self.last_action],
            score=score,
            score_label=score_label,
            frame_index=self.frames,
            steps=status.steps,
            sampler=status.sampler,
            fusion=status.fusion.label if status.fusion is not None else None,
            view=self.view.label if "views" in self.engine.live else None,
            recording=self.recording,
            paused=self.paused,
            detail=self.notice if now < self.notice_until else detail(self.view, status),
            nonfinite=status.nonfinite,
            display_hz=display_hz,
            display_fps=display_fps,
            settings=self.settings_shown(status),
            player=self.player,
            game_over=self.game_over_shown,
        )
