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

``display_hz`` (temporal super-resolution, tsr.py; a whole multiple of ``fps``, the play tick rate
it is relative to) shows ``display_hz / fps`` frames per model frame in the unpaced run, and adds
``tsr`` to each result: the cost of one in-between frame (making it, presenting it), frames
presented per second, and the key-to-frame latency it adds, measured in two short runs paced at
``fps`` as play runs, TSR off then on (``added_latency_ms`` = on - off). The other keys keep their
meaning: ``fps`` counts model frames, and ``latency_ms`` runs to the model frame being presented
(after its in-between frames).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import psutil

from worldgame.engine.engines import Engine
from worldgame.engine.factory import make_engine
from worldgame.engine.hud import HUD_LINES
from worldgame.engine.stats import RunStats
from worldgame.engine.views import View
from worldgame.frontend.loop import BetweenInfo, FrameInfo, PlayLoop
from worldgame.frontend.tsr import frames_per_tick
from worldgame.settings import BenchSettings

CONTRACT_STAGES = ("input", "denoise", "fusion", "decode", "present")
PACED_TICKS, PACED_WARMUP = 60, 5  # model ticks of each paced TSR latency run (at most ``frames``), and unmeasured ticks first


def run(cfg: BenchSettings) -> dict[str, Any]:
    """Entry point of ``worldgame bench`` (hydra config: conf/bench.yaml; settings.BenchSettings)."""
    steps_list, tick_hz, display_hz = list(cfg.steps), cfg.fps, cfg.display_hz
    per_tick, interpolation = frames_per_tick(tick_hz, display_hz), str(cfg.display_interp)
    from worldgame.frontend.window import Window, require_display

    if cfg.display:
        require_display()  # a real window, or one clear line saying why there is none
    else:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # headless: the window is drawn off-screen
    engine, meta = make_engine(cfg, cfg.seed)  # the checkpoint's own game unless game= was chosen
    import pygame

    window = Window(engine.frame_size, cfg.scale, hud_lines=HUD_LINES, title="worldgame bench")
    soak = cfg.frames >= cfg.soak_frames
    results = []
    try:
        for steps in steps_list:
            engine.set_steps(steps)
            view = View.parse(cfg.view)
            result = bench_steps(engine, window, cfg.frames, cfg.warmup, cfg.seed, view, soak, per_tick, interpolation, cfg.agent)
            # per result: the top-level keys are a fixed contract
            result.update(backend=engine.backend, precision=meta["precision"], window=pygame.display.get_driver(), sampler=meta["sampler"], spacing=meta["spacing"])
            stages = " ".join(f"{k} {v:.2f}" for k, v in result["stages_ms"].items())
            print(
                f"{meta['sampler']} steps {steps} ({engine.backend} {meta['precision']}, {result['window']} window): {result['fps']:.1f} FPS, "
                f"latency p50 {result['latency_ms']['p50']:.1f} ms p95 {result['latency_ms']['p95']:.1f} ms | {stages} ms",
                flush=True,
            )
            if per_tick > 1:
                paced = paced_latency(engine, window, tick_hz, per_tick, interpolation, min(cfg.frames, PACED_TICKS),
                                      cfg.seed, view, cfg.agent)
                tsr = result["tsr"] = {"display_hz": display_hz, "fps": tick_hz, **result["tsr"], **paced}
                made, paced_ms = tsr["interp_frame_ms"], tsr["paced"]["latency_ms"]
                print(
                    f"  TSR {tick_hz:g} -> {display_hz:g} Hz ({interpolation}): {made['total']:.2f} ms per in-between frame "
                    f"(interpolate {made['interpolate']:.2f}, present {made['present']:.2f}); paced at {tick_hz:g} Hz, "
                    f"key-to-frame p50 {paced_ms['off']['p50']:.1f} -> {paced_ms['on']['p50']:.1f} ms "
                    f"(+{tsr['added_latency_ms']['p50']:.1f}), to the first in-between frame {paced_ms['on_first_frame']['p50']:.1f} ms, "
                    f"shown at {tsr['paced']['display_fps']:.1f} Hz",
                    flush=True,
                )
            results.append(result)
    finally:
        window.close()
    report = {"device": meta["device"].split(":")[0], "threads": meta["threads"], "results": results}
    print(json.dumps(report))
    return report


def bench_steps(engine: Engine, window: Any, frames: int, warmup: int, seed: int, view: View, soak: bool,
                per_tick: int = 1, interpolation: str = "warp", agent: bool = False) -> dict[str, Any]:
    """Run the play loop unpaced for ``warmup + frames`` frames at the engine's step count
    (``per_tick`` > 1: with TSR's in-between frames, and a ``tsr`` entry for them; ``agent``: the
    checkpoint's agent chooses every action, its forward timed as the ``agent`` stage)."""
    stats, between, shown = RunStats(), RunStats(), RunStats()
    process = psutil.Process()
    rss: dict[str, float] = {}
    nonfinite_before = engine.status().nonfinite

    def on_frame(info: FrameInfo) -> None:
        if info.index > warmup:
            stats.add(info.stages_ms, info.latency_ms, info.presented_at)
            shown.add({}, 0.0, info.presented_at)
        elif info.index == warmup and soak:
            rss["start"] = process.memory_info().rss / 2**20

    def on_between(info: BetweenInfo) -> None:
        if info.index > warmup:
            between.add({"interpolate": info.interpolate_ms, "present": info.present_ms}, 0.0, info.presented_at)
            shown.add({}, 0.0, info.presented_at)

    loop = PlayLoop(engine, window, fps=0, seed=seed, view=view, script=held_keys(), max_frames=warmup + frames, on_frame=on_frame,
                    display_per_tick=per_tick, interpolation=interpolation, on_between=on_between, agent=agent)
    loop.run()
    means = stats.stage_means()
    result: dict[str, Any] = {
        "steps": engine.status().steps,
        "fps": round(stats.fps(), 2),
        "latency_ms": {"p50": round(stats.latency_percentile(50), 2), "p95": round(stats.latency_percentile(95), 2)},
        "stages_ms": {k: round(means.get(k, 0.0), 3) for k in CONTRACT_STAGES},
    }
    for extra in ("chance", "events", "agent"):  # the chance draw, the event head's score, the agent's move: what each costs a frame
        if extra in means:
            result["stages_ms"][extra] = round(means[extra], 3)
    if soak:
        rss["end"] = process.memory_info().rss / 2**20
        result["rss_mb"] = {k: round(v, 1) for k, v in rss.items()}
        result["nonfinite"] = engine.status().nonfinite - nonfinite_before
    if per_tick > 1:
        made = between.stage_means()
        made = {k: round(made.get(k, 0.0), 3) for k in ("interpolate", "present")}
        result["tsr"] = {
            "per_tick": per_tick,
            "interpolation": interpolation,
            "display_fps": round(shown.fps(), 2),  # model and in-between frames presented per second, unpaced
            "interpolated_frames": between.frames,
            "interp_frame_ms": {**made, "total": round(made["interpolate"] + made["present"], 3)},
        }
    return result


def paced_latency(engine: Engine, window: Any, fps: float, per_tick: int, interpolation: str, ticks: int, seed: int,
                  view: View, agent: bool = False) -> dict[str, Any]:
    """Key-to-frame latency as a player gets it: the play loop paced at ``fps`` for ``ticks`` model
    ticks, without TSR and then with it (``per_tick`` frames shown per model frame)."""
    off = _paced_run(engine, window, fps, 1, interpolation, ticks, seed, view, agent)
    on = _paced_run(engine, window, fps, per_tick, interpolation, ticks, seed, view, agent)
    latency = {"off": _percentiles(off[0]), "on": _percentiles(on[0]),
               "on_first_frame": _percentiles(on[1])}  # to the first in-between frame, the first to show any of it
    return {
        "paced": {"ticks": ticks, "latency_ms": latency, "display_fps": round(on[2].fps(), 2)},
        "added_latency_ms": {q: round(latency["on"][q] - latency["off"][q], 2) for q in ("p50", "p95")},
    }


def _paced_run(engine: Engine, window: Any, fps: float, per_tick: int, interpolation: str, ticks: int, seed: int,
               view: View, agent: bool = False) -> tuple[RunStats, RunStats, RunStats]:
    """(latency to the model frame, latency to the first frame shown for it, every presented frame)."""
    to_frame, to_first, shown = RunStats(), RunStats(), RunStats()

    def on_frame(info: FrameInfo) -> None:
        if info.index > PACED_WARMUP:
            to_frame.add({}, info.latency_ms, info.presented_at)
            to_first.add({}, info.first_latency_ms, info.presented_at)
            shown.add({}, 0.0, info.presented_at)

    def on_between(info: BetweenInfo) -> None:
        if info.index > PACED_WARMUP:
            shown.add({}, 0.0, info.presented_at)

    PlayLoop(engine, window, fps=fps, seed=seed, view=view, script=held_keys(), max_frames=PACED_WARMUP + ticks,
             on_frame=on_frame, display_per_tick=per_tick, interpolation=interpolation, on_between=on_between, agent=agent).run()
    return to_frame, to_first, shown


def _percentiles(stats: RunStats) -> dict[str, float]:
    return {"p50": round(stats.latency_percentile(50), 2), "p95": round(stats.latency_percentile(95), 2)}


def held_keys() -> Iterator[set[str]]:
    """Endless scripted input: each direction held for 8 frames, then a shot, over and over."""
    pattern = [{"right"}] * 8 + [{"down"}] * 8 + [{"left"}] * 8 + [{"up"}] * 8 + [{"space"}, set()]
    return itertools.cycle(pattern)
