"""THE play loop: one window loop for every engine (real game or world model; the engine is
swapped, never the loop).

One tick: read events (keyboard, or a script's synthetic events posted through pygame's own
queue) → action → engine step → draw the view's panels + HUD → present → record → wait for the
next tick. The tick rate is fixed (``fps``, 30 by default; 0 = as fast as possible, for tests and
bench); when the engine cannot keep up the HUD says so in the warning colour instead of silently
slowing down, and the loop never bursts to catch up.

Keys (H shows them in the window): arrows/WASD + Space play; P pause; '.' one frame while paused;
Backspace reset; R start/stop recording; H help; Esc or closing the window quits (a recording in
progress is saved). Model engine only: 1/2/4/8 LCM steps; F fusion off → φ latent → φ pixel;
M or Tab view Stream → LCM Steps → Temporal → World Model; Y re-syncs the model's context to the
real game running in lockstep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygame

from worldgame.runtime.controls import (
    STEP_COMMANDS,
    Command,
    Controls,
    ScriptItem,
    help_lines,
    scripted_events,
)
from worldgame.runtime.engines import Engine, StepResult
from worldgame.runtime.hud import HudState, hud_lines
from worldgame.runtime.session import EVENT_RESET, EVENT_RESYNC, EVENT_STEP, SessionRecorder
from worldgame.runtime.stats import FrameStats, RunStats
from worldgame.runtime.views import View, panels
from worldgame.runtime.window import Window

if TYPE_CHECKING:
    from worldgame.runtime.model_engine import ModelEngine

HUD_REFRESH_S = 0.25  # the HUD text changes at most this often (readable, and cheap)
NOTICE_S = 2.5


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


class PlayLoop:
    """Runs an engine in a window until quit, the frame limit or the end of the script.

    Args:
        engine: RealEngine or ModelEngine.
        window: the pygame window to draw into.
        fps: tick rate in Hz (0 = unpaced).
        seed: reset n of this run uses ``seed + n`` (so sessions can be regenerated).
        view: initial view mode (model engine; the real engine always shows its stream).
        recorder: where R / ``record`` write sessions (None = recording unavailable).
        record: start recording with the first frame.
        script: per-frame input for headless runs (see ``controls.scripted_events``); the run
            ends when it is exhausted.
        max_frames: stop after this many ticks (0 = no limit).
        on_frame: called after every presented frame.
        max_width: widest the window may grow in multi-panel views (panels shrink to fit).
    """

    def __init__(
        self,
        engine: Engine,
        window: Window,
        *,
        fps: float = 30.0,
        seed: int = 0,
        view: View | str = View.STREAM,
        recorder: SessionRecorder | None = None,
        record: bool = False,
        script: Iterable[ScriptItem] | None = None,
        max_frames: int = 0,
        on_frame: Callable[[FrameInfo], None] | None = None,
        max_width: int = 1600,
    ) -> None:
        self.engine = engine
        self.model: ModelEngine | None = engine if engine.kind == "model" else None  # type: ignore[assignment]
        self.window = window
        self.fps = float(fps)
        self.seed = int(seed)
        self.view = View.parse(view) if self.model is not None else View.STREAM
        self.recorder = recorder
        self.record_at_start = record
        self.script: Iterator[list[pygame.event.Event]] | None = scripted_events(script) if script is not None else None
        self.max_frames = int(max_frames)
        self.on_frame = on_frame
        self.base_scale = window.scale
        self.max_width = max(max_width, window.frame_size * window.scale)
        self.controls = Controls(engine.action_names, engine.key_bindings)
        self.help = help_lines(engine.action_names, engine.key_bindings, model=self.model is not None)
        self.stats = FrameStats()
        self.run_stats = RunStats()
        self.sessions: list[str] = []
        self.paused = self.show_help = False
        self.resets = 0  # resets done; the next uses seed + resets
        self.frames = 0
        self.ticks = 0
        self._quit = self._step_once = self._reset_pending = self._resync_pending = self._game_over = False
        self._notice, self._notice_until = "", 0.0
        self._last: StepResult | None = None
        self._last_action = 0
        self._episode_return = 0.0
        self._last_present: float | None = None
        self._hud: tuple[list[str], set[int]] = ([], set())
        self._hud_at = 0.0
        self._deadline = 0.0

    # --- running -------------------------------------------------------------------------------
    def run(self) -> LoopSummary:
        """Play until quit; a recording in progress is always saved."""
        t_start = time.perf_counter()
        try:
            self._reset()
            self._apply_view()
            self._present(self._last)
            if self.record_at_start:
                self._toggle_recording()
            self._deadline = time.perf_counter()
            while not self._quit and (self.max_frames <= 0 or self.ticks < self.max_frames):
                self.tick()
                self._pace()
        finally:
            self._stop_recording()
        stats = self.run_stats
        return LoopSummary(
            frames=self.frames,
            seconds=time.perf_counter() - t_start,
            fps=stats.fps(),
            latency_ms={"p50": stats.latency_percentile(50), "p95": stats.latency_percentile(95)},
            stages_ms=stats.stage_means(),
            sessions=list(self.sessions),
            nonfinite=self.model.nonfinite if self.model is not None else 0,
        )

    def tick(self) -> None:
        """One tick: input, engine, present, record."""
        t0 = time.perf_counter()
        self.ticks += 1
        if self.script is not None:
            try:
                for event in next(self.script):
                    pygame.event.post(event)
            except StopIteration:
                self._quit = True
                return
        for event in pygame.event.get():
            command = self.controls.handle(event)
            if command is not None:
                self._command(command)
        if self._quit:
            return
        action = self.controls.action()
        t_read = time.perf_counter()
        result, event = None, EVENT_STEP
        if self._reset_pending or self._game_over:
            result, event, action = self._reset(), EVENT_RESET, 0
        elif not self.paused or self._step_once:
            self._step_once = False
            if self._resync_pending and self.model is not None:
                self.model.resync()
                event = EVENT_RESYNC
            self._resync_pending = False
            result = self.engine.step(action)
        if result is None:  # paused: keep the window alive
            self._present(self._last)
            self._last_present = None
            return
        t_present = time.perf_counter()
        self._present(result)
        now = time.perf_counter()
        stages = dict(result.stages_ms)
        stages["input"] = stages.get("input", 0.0) + (t_read - t0) * 1000
        stages["present"] = (now - t_present) * 1000
        latency = (now - t_read) * 1000
        interval = None if self._last_present is None else (now - self._last_present) * 1000
        self._last_present = now
        self.stats.add(stages, latency, interval)
        self.run_stats.add(stages, latency, now)
        self.frames += 1
        self._last, self._last_action = result, action
        self._episode_return = 0.0 if event == EVENT_RESET else self._episode_return + result.reward
        self._game_over = result.done
        if result.done:
            self._say("game over: a new game starts")
        if self.recorder is not None and self.recorder.active:
            self.recorder.add(result.frame, action, result.reward, result.done, self._columns(stages, latency), event)
        if self.on_frame is not None:
            self.on_frame(FrameInfo(self.frames, action, event, result, stages, latency, now, self.view, self.window.panels))

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

    # --- commands ------------------------------------------------------------------------------
    def _command(self, command: Command) -> None:
        model = self.model
        if command is Command.QUIT:
            self._quit = True
        elif command is Command.PAUSE:
            self.paused = not self.paused
        elif command is Command.STEP_ONCE:
            self._step_once = self.paused
        elif command is Command.RESET:
            self._reset_pending = True
        elif command is Command.RECORD:
            self._toggle_recording()
        elif command is Command.HELP:
            self.show_help = not self.show_help
        elif model is None:
            self._say(f"{command.value}: model engine only")
        elif command in STEP_COMMANDS:
            model.set_steps(STEP_COMMANDS[command])
            self.stats.clear()
            self._apply_view()
            self._say(f"{model.steps} LCM step{'s' if model.steps > 1 else ''}")
        elif command is Command.FUSION:
            model.set_fusion(model.fusion_mode.next())
            self.stats.clear()
            self._say(f"fusion {model.fusion_mode.label}")
        elif command is Command.VIEW:
            self.view = self.view.next()
            self._apply_view()
            self._say(f"view {self.view.label}")
        elif command is Command.RESYNC:
            self._resync_pending = True
            self._say("model re-synced to the real game")
        self._hud_at = 0.0  # show the change now

    def _reset(self) -> StepResult:
        frame = self.engine.reset(self.seed + self.resets)
        self.resets += 1
        self._reset_pending = self._game_over = False
        result = StepResult(frame, real=frame if self.model is not None else None)
        self._last = result
        return result

    def _toggle_recording(self) -> None:
        if self.recorder is None:
            self._say("recording is not available here")
        elif self.recorder.active:
            self._stop_recording()
        elif self._last is not None:
            path = self.recorder.start(self.engine, self._last.frame, self._last_action, self.seed, self.resets)
            self._say(f"recording to {path}")

    def _stop_recording(self) -> None:
        if self.recorder is not None and self.recorder.active:
            path = self.recorder.stop()
            if path is not None:
                self.sessions.append(str(path))
                self._say(f"saved {path}")

    def _columns(self, stages: dict[str, float], latency: float) -> dict[str, float]:
        columns = {**stages, "latency": latency}
        if self.model is not None:
            columns["lcm_steps"] = self.model.steps
            columns["fusion_mode"] = self.model.fusion_mode.code
        return columns

    # --- drawing -------------------------------------------------------------------------------
    def _apply_view(self) -> None:
        """Tell the engine what the view needs and size the window for its panels."""
        if self.model is not None:
            self.model.want_steps = self.view.needs_steps
            self.model.want_unfused = self.view.needs_unfused
            count = self.view.panel_count(self.model.steps)
        else:
            count = 1
        size = self.window.frame_size
        scale = max(1, min(self.base_scale, self.max_width // (size * count)))
        self.window.resize(count, scale)

    def _present(self, result: StepResult | None) -> None:
        if result is None:
            return
        if self.model is not None:
            shown = panels(self.view, result, self.model.steps, self.model.fusion_mode.label)
        else:
            shown = [(result.frame, None)]
        for i, (frame, label) in enumerate(shown):
            self.window.blit_frame(frame, i, label)
        now = time.perf_counter()
        if now - self._hud_at >= HUD_REFRESH_S:
            self._hud = hud_lines(self.stats, self._hud_state(now))
            self._hud_at = now
        self.window.draw_hud(*self._hud)
        if self.show_help:
            self.window.draw_overlay(self.help)
        self.window.present()

    def _hud_state(self, now: float) -> HudState:
        model, last = self.model, self._last
        if model is not None:
            real = last.info.get("real", {}) if last is not None else {}
            score = f"{real.get('score', '?')} (real game)"
        else:
            info = last.info if last is not None else {}
            score = str(info.get("score", f"{self._episode_return:g}"))
        state = HudState(
            engine=self.engine.kind,
            target_fps=self.fps,
            action=self.engine.action_names[self._last_action],
            score=score,
            frame_index=self.frames,
            recording=self.recorder is not None and self.recorder.active,
            paused=self.paused,
        )
        if model is not None:
            state.steps, state.fusion, state.view = model.steps, model.fusion_mode.label, self.view.label
            state.nonfinite = model.nonfinite
        if now < self._notice_until:
            state.detail = self._notice
        elif model is not None and self.view is View.TEMPORAL:
            state.detail = "weights " + " ".join(f"{w:.2f}" for w in model.fusion.weights)
            if model.fusion_mode.value == "off":
                state.detail = "fusion off: F turns it on"
        elif model is not None and self.view is View.WORLD_MODEL:
            state.detail = "left: real game, right: model | Y re-syncs"
        elif model is not None and self.view is View.LCM_STEPS:
            state.detail = "denoised estimate after each LCM step"
        return state

    def _say(self, text: str) -> None:
        self._notice, self._notice_until = text, time.perf_counter() + NOTICE_S
        self._hud_at = 0.0
