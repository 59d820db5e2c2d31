"""`worldgame bench`: play's own code path (the engine factory, PlayLoop and a Window), unpaced, for
several LCM step counts; the last stdout line is one JSON object (DESIGN.md).

Headless by default (SDL's off-screen ``dummy`` driver: the window is drawn exactly as on screen,
but presenting it costs nothing). ``display=true`` opens a real window on the display
(``DISPLAY``, e.g. an Xvfb server), so ``present`` is what a player's window costs; each result
names the SDL driver it was drawn with (``window``).

Input is a script of held keys posted through pygame's event queue, so the input stage is real.
FPS counts presented frames per second; latency runs from the action being read to its frame
being presented; stages are means per frame. ``frames`` >= ``soak_frames`` adds, per step count,
the process RSS after warm-up and at the end, and the number of non-finite predicted latents.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import psutil
from omegaconf import DictConfig

from worldgame.errors import WorldgameError
from worldgame.runtime.engines import Engine
from worldgame.runtime.factory import make_engine
from worldgame.runtime.hud import HUD_LINES
from worldgame.runtime.loop import FrameInfo, PlayLoop
from worldgame.runtime.stats import RunStats
from worldgame.runtime.views import View

CONTRACT_STAGES = ("input", "denoise", "fusion", "decode", "present")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``worldgame bench`` (hydra config: conf/bench.yaml)."""
    steps_list = [int(s) for s in (cfg.steps if not isinstance(cfg.steps, (int, str)) else [cfg.steps])]
    if not steps_list or any(s not in (1, 2, 4, 8) for s in steps_list):
        raise WorldgameError(f"steps={list(steps_list)}: each must be 1, 2, 4 or 8")
    if int(cfg.frames) < 2 or int(cfg.warmup) < 0:
        raise WorldgameError("frames must be >= 2 and warmup >= 0")
    from worldgame.runtime.window import Window, require_display

    if cfg.get("display", False):
        require_display()  # a real window, or one clear line saying why there is none
    else:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # headless: the window is drawn off-screen
    engine, meta = make_engine(cfg, int(cfg.seed))  # the checkpoint's own game unless game= was chosen
    import pygame

    window = Window(engine.frame_size, int(cfg.scale), hud_lines=HUD_LINES, title="worldgame bench")
    soak = int(cfg.frames) >= int(cfg.soak_frames)
    results = []
    try:
        for steps in steps_list:
            engine.set_steps(steps)
            result = bench_steps(engine, window, int(cfg.frames), int(cfg.warmup), int(cfg.seed), View.parse(cfg.view), soak)
            # per result: the top-level keys are a fixed contract
            result.update(backend=engine.backend, window=pygame.display.get_driver())
            results.append(result)
            stages = " ".join(f"{k} {v:.2f}" for k, v in result["stages_ms"].items())
            print(
                f"steps {steps} ({engine.backend}, {result['window']} window): {result['fps']:.1f} FPS, "
                f"latency p50 {result['latency_ms']['p50']:.1f} ms p95 {result['latency_ms']['p95']:.1f} ms | {stages} ms",
                flush=True,
            )
    finally:
        window.close()
    report = {"device": meta["device"].split(":")[0], "threads": meta["threads"], "results": results}
    print(json.dumps(report))
    return report


def bench_steps(engine: Engine, window: Any, frames: int, warmup: int, seed: int, view: View, soak: bool) -> dict[str, Any]:
    """Run the play loop unpaced for ``warmup + frames`` frames at the engine's step count."""
    stats = RunStats()
    process = psutil.Process()
    rss: dict[str, float] = {}
    nonfinite_before = engine.status().nonfinite

    def on_frame(info: FrameInfo) -> None:
        if info.index > warmup:
            stats.add(info.stages_ms, info.latency_ms, info.presented_at)
        elif info.index == warmup and soak:
            rss["start"] = process.memory_info().rss / 2**20

    loop = PlayLoop(engine, window, fps=0, seed=seed, view=view, script=held_keys(), max_frames=warmup + frames, on_frame=on_frame)
    loop.run()
    means = stats.stage_means()
    result: dict[str, Any] = {
        "steps": engine.status().steps,
        "fps": round(stats.fps(), 2),
        "latency_ms": {"p50": round(stats.latency_percentile(50), 2), "p95": round(stats.latency_percentile(95), 2)},
        "stages_ms": {k: round(means.get(k, 0.0), 3) for k in CONTRACT_STAGES},
    }
    if soak:
        rss["end"] = process.memory_info().rss / 2**20
        result["rss_mb"] = {k: round(v, 1) for k, v in rss.items()}
        result["nonfinite"] = engine.status().nonfinite - nonfinite_before
    return result


def held_keys() -> Iterator[set[str]]:
    """Endless scripted input: each direction held for 8 frames, then a shot, over and over."""
    pattern = [{"right"}] * 8 + [{"down"}] * 8 + [{"left"}] * 8 + [{"up"}] * 8 + [{"space"}, set()]
    return itertools.cycle(pattern)
