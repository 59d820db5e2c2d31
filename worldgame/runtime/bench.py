"""`worldgame bench`: play's own code path (ModelEngine + PlayLoop + an off-screen window), headless
and unpaced, for several LCM step counts; the last stdout line is one JSON object (DESIGN.md).

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
from worldgame.runtime.engines import configure_threads
from worldgame.runtime.hud import HUD_LINES
from worldgame.runtime.loop import FrameInfo, PlayLoop
from worldgame.runtime.model_engine import ModelEngine
from worldgame.runtime.play import game_of, load_model
from worldgame.runtime.stats import RunStats
from worldgame.runtime.views import View

CONTRACT_STAGES = ("input", "denoise", "fusion", "decode", "present")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``worldgame bench`` (hydra config: conf/bench.yaml)."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"  # headless by design: the window is drawn off-screen
    steps_list = [int(s) for s in (cfg.steps if not isinstance(cfg.steps, (int, str)) else [cfg.steps])]
    if not steps_list or any(s not in (1, 2, 4, 8) for s in steps_list):
        raise WorldgameError(f"steps={list(steps_list)}: each must be 1, 2, 4 or 8")
    if int(cfg.frames) < 2 or int(cfg.warmup) < 0:
        raise WorldgameError("frames must be >= 2 and warmup >= 0")
    from worldgame.runtime.window import Window

    game = game_of(cfg)  # the checkpoint's own game unless game= was chosen
    model = load_model(cfg.checkpoint, game.name, game.frame_size, cfg.device, cfg.half)
    threads = configure_threads(int(cfg.threads), model.device)
    engine = ModelEngine(
        model,
        steps=steps_list[0],
        fusion=cfg.fusion,
        fusion_window=int(cfg.fusion_window),
        fusion_base=float(cfg.fusion_base),
        seed=int(cfg.seed),
        optimize=bool(cfg.optimize),
    )
    window = Window(engine.frame_size, int(cfg.scale), hud_lines=HUD_LINES, title="worldgame bench")
    soak = int(cfg.frames) >= int(cfg.soak_frames)
    results = []
    try:
        for steps in steps_list:
            engine.set_steps(steps)
            result = bench_steps(engine, window, int(cfg.frames), int(cfg.warmup), int(cfg.seed), View.parse(cfg.view), soak)
            results.append(result)
            stages = " ".join(f"{k} {v:.2f}" for k, v in result["stages_ms"].items())
            print(
                f"steps {steps}: {result['fps']:.1f} FPS, latency p50 {result['latency_ms']['p50']:.1f} ms "
                f"p95 {result['latency_ms']['p95']:.1f} ms | {stages} ms",
                flush=True,
            )
    finally:
        window.close()
    report = {"device": model.device.type, "threads": threads, "results": results}
    print(json.dumps(report))
    return report


def bench_steps(engine: ModelEngine, window: Any, frames: int, warmup: int, seed: int, view: View, soak: bool) -> dict[str, Any]:
    """Run the play loop unpaced for ``warmup + frames`` frames at the engine's step count."""
    stats = RunStats()
    process = psutil.Process()
    rss: dict[str, float] = {}
    nonfinite_before = engine.nonfinite

    def on_frame(info: FrameInfo) -> None:
        if info.index > warmup:
            stats.add(info.stages_ms, info.latency_ms, info.presented_at)
        elif info.index == warmup and soak:
            rss["start"] = process.memory_info().rss / 2**20

    loop = PlayLoop(engine, window, fps=0, seed=seed, view=view, script=held_keys(), max_frames=warmup + frames, on_frame=on_frame)
    loop.run()
    means = stats.stage_means()
    result: dict[str, Any] = {
        "steps": engine.steps,
        "fps": round(stats.fps(), 2),
        "latency_ms": {"p50": round(stats.latency_percentile(50), 2), "p95": round(stats.latency_percentile(95), 2)},
        "stages_ms": {k: round(means.get(k, 0.0), 3) for k in CONTRACT_STAGES},
    }
    if soak:
        rss["end"] = process.memory_info().rss / 2**20
        result["rss_mb"] = {k: round(v, 1) for k, v in rss.items()}
        result["nonfinite"] = engine.nonfinite - nonfinite_before
    return result


def held_keys() -> Iterator[set[str]]:
    """Endless scripted input: each direction held for 8 frames, then a shot, over and over."""
    pattern = [{"right"}] * 8 + [{"down"}] * 8 + [{"left"}] * 8 + [{"up"}] * 8 + [{"space"}, set()]
    return itertools.cycle(pattern)
