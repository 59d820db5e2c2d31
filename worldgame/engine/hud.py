"""The HUD: the text lines drawn under the frames (timings, settings, action, score, notices)."""

from __future__ import annotations

from dataclasses import dataclass, field

from worldgame.engine.stats import FrameStats

HUD_LINES = 5
SLOW_MARGIN = 0.95  # warn when the measured rate falls below this share of the tick rate


@dataclass
class HudState:
    """What the HUD shows besides the timings."""

    engine: str
    target_fps: float
    action: str
    score: str | None  # None: nothing meaningful to show (the dream has no score of its own)
    frame_index: int
    steps: int | None = None
    sampler: str | None = None  # the sampler's short name (LCM, DDIM, DPM++ 2M)
    fusion: str | None = None
    view: str | None = None
    recording: bool = False
    paused: bool = False
    detail: str = ""  # view-specific line (fusion weights, timesteps) or a transient notice
    nonfinite: int = 0
    score_label: str = "score"
    display_hz: float = 0.0  # TSR's display rate (0: off)
    display_fps: float = 0.0  # frames presented per second, in-between frames included
    settings: list[str] = field(default_factory=list)  # further live settings ("context noise 0.05"): tick_core.settings_shown
    player: str | None = None  # who has the controls: "agent" or "you" (None: no agent to hand them to)
    game_over: bool = False  # the GAME OVER screen is up


def hud_lines(stats: FrameStats, state: HudState) -> tuple[list[str], set[int]]:
    """The HUD's text lines and the indices to draw in the warning colour."""
    warn: set[int] = set()
    fps = stats.fps()
    p95 = stats.p95_latency()
    if state.target_fps > 0 and stats.frames >= 10 and fps < SLOW_MARGIN * state.target_fps:
        first = f"{state.engine} slower than {state.target_fps:g} Hz: {fps:.0f} FPS | p95 latency {p95:.1f} ms"
        warn.add(0)
    elif state.display_hz > 0:  # TSR: the model's rate and the window's
        first = f"FPS {fps:.1f} | display {state.display_fps:.1f} Hz | p95 latency {p95:.1f} ms"
        if stats.frames >= 10 and state.display_fps < SLOW_MARGIN * state.display_hz:
            warn.add(0)
    else:
        first = f"FPS {fps:.1f} | frame {stats.frame_ms():.1f} ms | p95 latency {p95:.1f} ms"
    stages = "  ".join(f"{k} {v:.1f}" for k, v in stats.stage_means().items()) + " ms"
    mode = [state.engine.upper()]
    if state.steps is not None:
        mode.append(f"{state.sampler + ' ' if state.sampler else ''}steps {state.steps}")
    if state.fusion is not None:
        mode.append(f"fusion {state.fusion}")
    if state.view is not None:
        mode.append(f"view {state.view}")
    mode += state.settings
    play = [] if state.player is None else [f"player {state.player}"]
    play.append(f"action {state.action}")
    if state.score is not None:
        play.append(f"{state.score_label} {state.score}")
    play.append(f"t {state.frame_index}")
    if state.recording:
        play.append("REC")
    if state.paused:
        play.append("PAUSED ('.' steps)")
    if state.game_over:
        play.append("GAME OVER")
    detail = state.detail or ("the agent plays: G takes the controls | H: help" if state.player == "agent" else "H: help")
    if state.nonfinite:
        detail = f"{state.nonfinite} non-finite predictions! {detail}"
        warn.add(4)
    if state.recording:
        warn.add(3)
    return [first, stages, " | ".join(mode), " | ".join(play), detail], warn
