"""`worldgame play`: the game window, with the world model (default), the real game, or both."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig

from worldgame.errors import WorldgameError
from worldgame.runtime.controls import ScriptItem
from worldgame.runtime.engines import FusionMode
from worldgame.runtime.factory import ENGINES, make_engine
from worldgame.runtime.hud import HUD_LINES
from worldgame.runtime.loop import BetweenInfo, FrameInfo, LoopSummary, PlayLoop
from worldgame.runtime.session import SessionRecorder
from worldgame.runtime.tsr import INTERPOLATIONS, frames_per_tick
from worldgame.runtime.views import View
from worldgame.runtime.window import Window, require_display

__all__ = ["make_engine", "play", "run"]  # make_engine: the factory's, for callers of play
FUSION_MODES = tuple(m.value for m in FusionMode)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``worldgame play`` (hydra config: conf/play.yaml)."""
    summary = play(cfg)
    line = f"played {summary.frames} frames at {summary.fps:.1f} FPS, p95 latency {summary.latency_ms['p95']:.1f} ms"
    if summary.between_frames:
        line += f" (shown at {summary.display_fps:.1f} Hz with {summary.between_frames} in-between frames)"
    if summary.sessions:
        line += "; sessions: " + ", ".join(summary.sessions)
    print(line)
    return {"frames": summary.frames, "fps": summary.fps, "sessions": summary.sessions}


def play(
    cfg: DictConfig,
    script: Iterable[ScriptItem] | None = None,
    on_frame: Callable[[FrameInfo], None] | None = None,
    on_between: Callable[[BetweenInfo], None] | None = None,
) -> LoopSummary:
    """Open the window and run the loop; ``script``/``on_frame``/``on_between`` drive it headless (tests)."""
    per_tick = check_settings(cfg)
    require_display()
    seed = int(cfg.seed) if cfg.seed is not None else random.randrange(1 << 24)
    engine, metadata = make_engine(cfg, seed)
    metadata["scripted"] = script is not None
    window = Window(engine.frame_size, int(cfg.scale), hud_lines=HUD_LINES, native_size=metadata.get("native_size"),
                    title=f"worldgame — {metadata['game']} ({engine.kind})")
    try:
        loop = PlayLoop(
            engine,
            window,
            fps=float(cfg.fps),
            seed=seed,
            view=View.world_model if cfg.engine == "side_by_side" else cfg.view,
            recorder=SessionRecorder(cfg.sessions, metadata),
            record=bool(cfg.record),
            script=script,
            max_frames=int(cfg.frames),
            on_frame=on_frame,
            display_per_tick=per_tick,
            interpolation=str(cfg.get("display_interp", "warp")),
            on_between=on_between,
        )
        return loop.run()
    finally:
        window.close()


def check_settings(cfg: DictConfig) -> int:
    """One clear line for a bad value, before anything is loaded; returns the frames shown per
    model frame (1, or ``display_hz / fps`` with temporal super-resolution)."""
    if cfg.engine not in ENGINES:
        raise WorldgameError(f"engine={cfg.engine!r}: choose one of {', '.join(ENGINES)}")
    if int(cfg.steps) not in (1, 2, 4, 8):
        raise WorldgameError(f"steps={cfg.steps}: choose 1, 2, 4 or 8")
    if str(cfg.fusion).lower() not in FUSION_MODES:
        raise WorldgameError(f"fusion={cfg.fusion!r}: choose one of {', '.join(FUSION_MODES)}")
    if str(cfg.view).lower() not in [v.value for v in View]:
        raise WorldgameError(f"view={cfg.view!r}: choose one of {', '.join(v.value for v in View)}")
    if int(cfg.fusion_window) < 0 or float(cfg.fusion_base) <= 0:
        raise WorldgameError("fusion_window must be >= 0 and fusion_base > 0")
    if float(cfg.fps) < 0 or int(cfg.scale) < 1 or int(cfg.frames) < 0:
        raise WorldgameError("fps must be >= 0, scale >= 1 and frames >= 0")
    if str(cfg.get("display_interp", "warp")) not in INTERPOLATIONS:
        raise WorldgameError(f"display_interp={cfg.display_interp!r}: choose one of {', '.join(INTERPOLATIONS)}")
    return frames_per_tick(float(cfg.fps), float(cfg.get("display_hz", 0)))
