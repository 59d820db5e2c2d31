"""THE play loop: one window loop for every engine (real game or world model; the engine is
swapped, never the loop).

One tick: read events (keyboard, or a script's synthetic events posted through pygame's own
queue) → commands and action → the tick core (tick_core.py: the event, ``Driver.tick``, what the view
wants; the web server drives the same core) → draw the view's panels + HUD → present → the core
books the frame (stats, recording) → wait for the next tick. The tick rate is fixed (``fps``, 30 by default; 0 = as fast as possible, for tests and
bench); when the engine cannot keep up the HUD says so in the warning colour instead of silently
slowing down, and the loop never bursts to catch up.

Keys (H shows them in the window): arrows/WASD + Space play; P pause; '.' one frame while paused;
Backspace reset; R start/stop recording; H help; G hands the controls to the checkpoint's agent and
back (attract mode; ``agent``); Esc or closing the window quits (a recording in progress is saved).
A game over holds the last frame under a GAME OVER box with the final score (``game_over_ticks``,
or until a game key), then a new game starts. Live controls, for the engines that list them in ``engine.live`` (the model):
1/2/4/8 LCM steps; F fusion off → φ latent → φ pixel; M or Tab view Stream → Steps → Temporal →
World Model; Y re-syncs the model's context to the real game. The view tells the engine what it
will draw (``engine.want``); the HUD reads the engine's ``status()``.

Temporal super-resolution (``display_per_tick`` n > 1, play's ``display_hz``; tsr.py): in the Stream
view a stepped tick shows n frames, the n-1 in-between frames from the previous model frame to the
new one, one every 1/(n·fps) s (closer together if the model step leaves less of the tick), then
the new frame. Keys are still read once per tick, and only model frames are recorded or returned
to ``on_frame``; ``on_between`` sees the in-between ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pygame

from worldgame.engine.engines import Engine, EngineStatus, StepResult
from worldgame.engine.hud import HudState, hud_lines
from worldgame.engine.session import EVENT_STEP, SessionRecorder
from worldgame.engine.stats import FrameStats, RunStats
from worldgame.engine.tick_core import TickCore
from worldgame.engine.views import View
from worldgame.frontend.controls import Controls, ScriptItem, help_lines, scripted_events
from worldgame.frontend.tsr import Interpolator
from worldgame.frontend.window import Window

HUD_REFRESH_S = 0.25  # the HUD text changes at most this often (readable, and cheap)


@dataclass
class FrameInfo:
    """One presented frame, as handed to ``on_frame`` callbacks (tests, bench)."""

    index: int  # frames stepped so far, this one included
    action: int
    event: int  # session event code (step, reset, re-sync)
    result: StepResult
    stages_ms: dict[str, float]
    latency_ms: float
    presented_at: float  # perf_counter
    view: View
    panels: int  # frames side by side in the window
    shown: int = 1  # frames presented for this model frame: with TSR, the in-between ones and itself
    first_latency_ms: float = 0.0  # action read -> the first of those presented (latency_ms without TSR)


@dataclass
class BetweenInfo:
    """One in-between frame presented by temporal super-resolution, as handed to ``on_between``."""

    index: int  # the model frame it leads to (FrameInfo.index)
    alpha: float  # how far from the previous model frame (0) to that one (1)
    frame: np.ndarray  # a buffer reused by the next in-between frame: copy what you keep
    interpolate_ms: float
    present_ms: float
    presented_at: float  # perf_counter


@dataclass
class LoopSummary:
    """What a finished run did."""

    frames: int
    seconds: float
    fps: float
    latency_ms: dict[str, float]
    stages_ms: dict[str, float]
    sessions: list[str] = field(default_factory=list)
    nonfinite: int = 0
    display_fps: float = 0.0  # frames presented per second, in-between frames included (TSR; else fps)
    between_frames: int = 0  # in-between frames presented (TSR)


class PlayLoop:
    """Runs an engine in a window until quit, the frame limit or the end of the script.

    Args:
        engine: RealEngine or ModelEngine (anything with the engines.Engine interface).
        window: the pygame window to draw into.
        fps: tick rate in Hz (0 = unpaced).
        seed: reset n of this run uses ``seed + n`` (so sessions can be regenerated).
        view: initial view mode (engines without the "views" control always show Stream).
        recorder: where R / ``record`` write sessions (None = recording unavailable).
        record: start recording with the first frame.
        script: per-frame input for headless runs (see ``controls.scripted_events``); the run
            ends when it is exhausted.
        max_frames: stop after this many ticks (0 = no limit).
        on_frame: called after every presented frame.
        max_width: widest the window may grow in multi-panel views (panels shrink to fit).
        display_per_tick: frames shown per model frame (TSR, tsr.py): 1 = off; n > 1 shows n - 1
            in-between frames before each stepped model frame in the Stream view.
        interpolation: how in-between frames are made (``warp`` or ``blend``, tsr.py).
        on_between: called after every in-between frame presented.
        agent: the checkpoint's agent plays from the start (the engine lists "agent").
        game_over_ticks: ticks the GAME OVER screen holds the last frame (0: a new game at once).
    """

    def __init__(
        self,
        engine: Engine,
        window: Window,
        *,
        fps: float = 30.0,
        seed: int = 0,
        view: View | str = View.stream,
        recorder: SessionRecorder | None = None,
        record: bool = False,
        script: Iterable[ScriptItem] | None = None,
        max_frames: int = 0,
        on_frame: Callable[[FrameInfo], None] | None = None,
        max_width: int = 1600,
        display_per_tick: int = 1,
        interpolation: str = "warp",
        on_between: Callable[[BetweenInfo], None] | None = None,
        agent: bool = False,
        game_over_ticks: int = 0,
    ) -> None:
        self.engine = engine
        self.window = window
        self.fps = float(fps)
        self.base_scale = window.scale
        self.max_width = max(max_width, window.frame_size * window.scale)
        self.core = TickCore(engine, seed, view, recorder, on_layout=self._layout, agent=agent, game_over_ticks=game_over_ticks)
        self.record_at_start = record
        self.script: Iterator[list[pygame.event.Event]] | None = scripted_events(script) if script is not None else None
        self.max_frames = int(max_frames)
        self.on_frame = on_frame
        self.controls = Controls(engine.action_names, engine.key_bindings)
        self.help = help_lines(engine.action_names, engine.key_bindings, engine.live)
        self.ticks = 0
        self._last_present: float | None = None
        self._hud: tuple[list[str], set[int]] = ([], set())
        self._hud_at = 0.0
        self._deadline = 0.0
        self.per_tick = max(1, int(display_per_tick))
        self.interpolator = Interpolator(interpolation) if self.per_tick > 1 else None
        self.on_between = on_between
        self.display_stats = FrameStats()  # every presented frame, in-between ones included (TSR)
        self.display_run = RunStats()
        self.between_frames = 0
        self._previous: np.ndarray | None = None  # the last model frame, the start of the next in-betweens
        self._last_display: float | None = None

    # the session's state lives in the core; these read it where callers (tests, bench) look
    @property
    def view(self) -> View:
        return self.core.view

    @view.setter
    def view(self, view: View) -> None:
        self.core.view = view

    @property
    def stats(self) -> FrameStats:
        return self.core.stats

    @property
    def run_stats(self) -> RunStats:
        return self.core.run_stats

    @property
    def frames(self) -> int:
        return self.core.frames

    @property
    def sessions(self) -> list[str]:
        return self.core.sessions

    # --- running -------------------------------------------------------------------------------
    def run(self) -> LoopSummary:
        """Play until quit; a recording in progress is always saved."""
        core = self.core
        t_start = time.perf_counter()
        try:
            first = core.start()
            self._present(first)
            self._keep(first.frame)
            if self.record_at_start:
                core.set_recording(True)
            self._deadline = time.perf_counter()
            while not core.quit and (self.max_frames <= 0 or self.ticks < self.max_frames):
                self.tick()
                self._pace()
        finally:
            core.stop_recording()
        stats = core.run_stats
        return LoopSummary(
            frames=core.frames,
            seconds=time.perf_counter() - t_start,
            fps=stats.fps(),
            latency_ms={"p50": stats.latency_percentile(50), "p95": stats.latency_percentile(95)},
            stages_ms=stats.stage_means(),
            sessions=list(core.sessions),
            nonfinite=self.engine.status().nonfinite,
            display_fps=self.display_run.fps() if self.interpolator is not None else stats.fps(),
            between_frames=self.between_frames,
        )

    def tick(self) -> None:
        """One tick: input, engine (the core), present, book."""
        core = self.core
        t0 = time.perf_counter()
        self.ticks += 1
        if self.script is not None:
            try:
                for event in next(self.script):
                    pygame.event.post(event)
            except StopIteration:
                core.quit = True
                return
        for event in pygame.event.get():
            self.window.handle(event)
            command = self.controls.handle(event)
            if command is not None:
                core.command(command)
            elif event.type == pygame.KEYDOWN:  # a game key: it ends the GAME OVER screen
                core.any_key()
        if core.changed:
            core.changed, self._hud_at = False, 0.0  # show the change now
        if core.quit:
            return
        action = self.controls.action()
        t_read = time.perf_counter()
        event, action, result = core.advance(action)  # the agent's action while it plays (its forward counts as input)
        if event is None:  # paused or GAME OVER: keep the window alive, the last frame on screen
            self._present(result)
            self._last_present = self._last_display = None
            return
        between = self._between(result.frame, event) if self.interpolator is not None else None
        t_present = time.perf_counter()
        self._present(result)
        now = time.perf_counter()
        self._keep(result.frame)
        stages = dict(result.stages_ms)
        stages["input"] = stages.get("input", 0.0) + (t_read - t0) * 1000
        stages["present"] = (now - t_present) * 1000
        first = now
        if self.interpolator is not None:  # with TSR: the in-between frames' making and presenting count too
            made, presented, first = between or (0.0, 0.0, now)
            stages["interpolate"] = made
            stages["present"] += presented
        latency = (now - t_read) * 1000
        interval = None if self._last_present is None else (now - self._last_present) * 1000
        self._last_present = now
        core.finish(result, event, action, stages, latency, now, interval)
        if core.changed:  # game over, a recording saved
            core.changed, self._hud_at = False, 0.0
        if self.on_frame is not None:
            shown = self.per_tick if between is not None else 1
            self.on_frame(FrameInfo(core.frames, core.last_action, event, result, stages, latency, now, self.view,
                                    self.window.panels, shown, (first - t_read) * 1000))

    # --- temporal super-resolution --------------------------------------------------------------
    def _between(self, frame: np.ndarray, event: int) -> tuple[float, float, float] | None:
        """Present the in-between frames leading from the last model frame to ``frame``, paced one
        display period apart, and wait until ``frame``'s own turn. Returns (ms making them, ms
        presenting them, perf_counter when the first was presented), or None: nothing between (not
        a plain step in the Stream view: a reset or re-sync jumps, and other views show model frames only)."""
        previous, n = self._previous, self.per_tick
        if event != EVENT_STEP or self.view is not View.stream or previous is None or previous.shape != frame.shape:
            return None
        assert self.interpolator is not None
        self.interpolator.start(previous, frame)
        slot, made, presented, first = 0.0, 0.0, 0.0, 0.0
        for j in range(1, n):
            t0 = time.perf_counter()
            between = self.interpolator.frame(j / n)
            t1 = time.perf_counter()
            if j > 1:
                _sleep_until(first + (j - 1) * slot)
            t2 = time.perf_counter()
            self._present_frame(between)
            t3 = time.perf_counter()
            if j == 1 and self.fps > 0:  # one display period apart, and the model frame shown by the next tick
                next_tick = self._deadline + 1.0 / self.fps
                slot = max(0.0, min(1.0 / (self.fps * n), (next_tick - t3) / (n - 1)))
            first = first or t3
            made, presented = made + (t1 - t0) * 1000, presented + (t3 - t2) * 1000
            self.between_frames += 1
            self._count_display(t3)
            if self.on_between is not None:
                self.on_between(BetweenInfo(self.core.frames + 1, j / n, between, (t1 - t0) * 1000, (t3 - t2) * 1000, t3))
        _sleep_until(first + (n - 1) * slot)
        return made, presented, first

    def _keep(self, frame: np.ndarray) -> None:
        """Keep a copy of the model frame just shown (engines reuse their buffers): the next
        in-between frames start from it."""
        if self.interpolator is None:
            return
        if self._previous is None or self._previous.shape != frame.shape:
            self._previous = np.array(frame, np.uint8)
        else:
            np.copyto(self._previous, frame)
        self._count_display(time.perf_counter())

    def _count_display(self, now: float) -> None:
        interval = None if self._last_display is None else (now - self._last_display) * 1000
        self._last_display = now
        self.display_stats.add({}, 0.0, interval)
        self.display_run.add({}, 0.0, now)

    def _pace(self) -> None:
        if self.fps <= 0:
            return
        period = 1.0 / self.fps
        self._deadline += period
        delay = self._deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:  # fell behind: start counting again from now, never burst
            self._deadline = time.perf_counter()

    # --- drawing -------------------------------------------------------------------------------
    def _apply_view(self) -> None:
        """Tell the engine what the view draws and size the window for its panels."""
        self.core.apply_view()

    def _layout(self) -> None:
        """Size the window for the view's panels (the core calls this when they may change)."""
        count = self.view.panel_count(self.engine.status().steps or 1)
        self.window.set_native_size(self.engine.native_size)
        scale = self.base_scale
        while scale > 1 and self.window.panel_size(scale)[0] * count > self.max_width:
            scale -= 1
        self.window.resize(count, scale)

    def _present(self, result: StepResult | None) -> None:
        if result is None:
            return
        status = self.engine.status()
        for i, (frame, label) in enumerate(self.core.panels(result, status)):
            self.window.blit_frame(frame, i, label)
        self._finish(status)

    def _present_frame(self, frame: np.ndarray) -> None:
        """Present one frame in the Stream view's panel (an in-between frame)."""
        self.window.blit_frame(frame, 0)
        self._finish(self.engine.status())

    def _finish(self, status: EngineStatus) -> None:
        """Draw the HUD (and help) over what was drawn, and present."""
        now = time.perf_counter()
        if now - self._hud_at >= HUD_REFRESH_S:
            self._hud = hud_lines(self.stats, self._hud_state(now, status))
            self._hud_at = now
        self.window.draw_hud(*self._hud)
        if self.core.show_help:
            self.window.draw_overlay(self.help)
        elif (game_over := self.core.game_over_lines(status)) is not None:
            self.window.draw_overlay(game_over, title=True)
        self.window.present()

    def _hud_state(self, now: float, status: EngineStatus | None = None) -> HudState:
        display_hz = self.fps * self.per_tick if self.interpolator is not None else 0.0
        return self.core.hud_state(now, self.fps, status, display_hz, self.display_stats.fps())


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
