"""`worldgame play`: the game window, with the world model (default), the real game, or both."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from worldgame.engine.factory import exit_quickly, game_of, make_engine
from worldgame.engine.hud import HUD_LINES
from worldgame.engine.session import SessionRecorder
from worldgame.engine.views import View
from worldgame.frontend.controls import ScriptItem
from worldgame.frontend.loop import BetweenInfo, FrameInfo, LoopSummary, PlayLoop
from worldgame.frontend.tsr import frames_per_tick
from worldgame.frontend.window import Window, require_display
from worldgame.settings import Engine, PlaySettings

__all__ = ["make_engine", "play", "run"]  # make_engine: the factory's, for callers of play


def run(cfg: PlaySettings) -> dict[str, Any]:
    """Entry point of ``worldgame play`` (hydra config: conf/play.yaml)."""
    exit_quickly()  # Esc: the prompt returns when the window closes, not seconds later
    summary = play(cfg)
    # the start frame is shown and recorded too: a session holds one frame more than the steps taken,
    # the count replay and export report
    line = (f"played {summary.frames} steps ({summary.frames + 1} frames with the start) at {summary.fps:.1f} FPS, "
            f"p95 latency {summary.latency_ms['p95']:.1f} ms")
    if summary.between_frames:
        line += f" (shown at {summary.display_fps:.1f} Hz with {summary.between_frames} in-between frames)"
    if summary.sessions:
        line += "; sessions: " + ", ".join(summary.sessions)
    print(line)
    return {"frames": summary.frames, "fps": summary.fps, "sessions": summary.sessions}


def play(
    cfg: PlaySettings,
    script: Iterable[ScriptItem] | None = None,
    on_frame: Callable[[FrameInfo], None] | None = None,
    on_between: Callable[[BetweenInfo], None] | None = None,
) -> LoopSummary:
    """Open the window and run the loop; ``script``/``on_frame``/``on_between`` drive it headless (tests)."""
    require_display()
    seed = cfg.seed if cfg.seed is not None else random.randrange(1 << 24)
    game = game_of(cfg, cfg.engine)
    fps = cfg.fps if cfg.fps is not None else game.tick_hz  # the game's own speed unless fps= was given
    per_tick = frames_per_tick(fps, cfg.display_hz)  # fps=null: checked once the game is known, before the model loads
    engine, metadata = make_engine(cfg, seed, cfg.engine, game)
    metadata["scripted"] = script is not None
    window = Window(engine.frame_size, cfg.scale, hud_lines=HUD_LINES, native_size=metadata.get("native_size"),
                    title=f"worldgame — {metadata['game']} ({engine.kind})")
    try:
        loop = PlayLoop(
            engine,
            window,
            fps=fps,
            seed=seed,
            view=View.world_model if cfg.engine == Engine.side_by_side else View.parse(cfg.view),
            recorder=SessionRecorder(cfg.sessions, metadata),
            record=cfg.record,
            script=script,
            max_frames=cfg.frames,
            on_frame=on_frame,
            display_per_tick=per_tick,
            interpolation=str(cfg.display_interp),
            on_between=on_between,
            agent=cfg.agent,
            # the GAME OVER screen's moment in ticks: at the tick rate (unpaced runs: the game's own)
            game_over_ticks=round(cfg.game_over_s * (fps or game.tick_hz)),
        )
        return loop.run()
    finally:
        window.close()
