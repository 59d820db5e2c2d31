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

SIGTERM or SIGINT (or the window closed, ``display=true``) ends the whole run within a frame: the
step counts measured are printed as usual, the one running is printed with ``"partial": true`` and
``frames``, the frames it measured (dropped when under two were: no FPS without them), the rest are
not run; the JSON line still comes last, then one line on stderr, and the exit status is 128 + the
signal (130 SIGINT, 143 SIGTERM; 1 for a closed window). A second signal stops at once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psutil

from worldgame.engine.engines import Engine
from worldgame.engine.factory import exit_quickly, make_engine
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
    from worldgame.frontend.window import require_display

    if cfg.display:
        require_display()  # a real window, or one clear line saying why there is none
        if threading.current_thread() is threading.main_thread():  # SDL took SIGTERM as it opened the display (a
            signal.signal(signal.SIGTERM, signal.SIG_DFL)          # QUIT posted later): loading ends at once, as headless
    else:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # headless: the window is drawn off-screen
    exit_quickly()  # a stopped run exits at once, not after seconds of final garbage collection
    engine, meta = make_engine(cfg, cfg.seed)  # the checkpoint's own game unless game= was chosen
    import pygame

    stop = Stop()
    with stop:  # from here SIGTERM/SIGINT end the run at the next frame (SDL's own handler is never installed)
        results = _measure(cfg, engine, meta, stop, pygame, steps_list, tick_hz, display_hz, per_tick, interpolation)
    report = {"device": meta["device"].split(":")[0], "threads": meta["threads"], "results": results}
    print(json.dumps(report), flush=True)
    if stop.requested:
        partial = ", the last partly" if results and results[-1].get("partial") else ""
        print(f"worldgame bench: stopped by {stop.reason}; {len(results)} of {len(steps_list)} step counts measured{partial}",
              file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    return report


def _measure(cfg: BenchSettings, engine: Engine, meta: dict[str, Any], stop: Stop, pygame: Any, steps_list: list[int],
             tick_hz: float, display_hz: float, per_tick: int, interpolation: str) -> list[dict[str, Any]]:
    """The results of each step count in turn, until they are all measured or ``stop`` is requested."""
    from worldgame.frontend.window import Window

    window = Window(engine.frame_size, cfg.scale, hud_lines=HUD_LINES, title="worldgame bench")
    soak = cfg.frames >= cfg.soak_frames
    results: list[dict[str, Any]] = []
    try:
        for steps in steps_list:
            if stop.requested:
                break
            engine.set_steps(steps)
            view = View.parse(cfg.view)
            result = bench_steps(engine, window, cfg.frames, cfg.warmup, cfg.seed, view, soak, per_tick, interpolation,
                                 cfg.agent, stop)
            if result is None:  # stopped before two frames were measured: nothing to report
                break
            # per result: the top-level keys are a fixed contract
            result.update(backend=engine.backend, precision=meta["precision"], window=pygame.display.get_driver(), sampler=meta["sampler"], spacing=meta["spacing"])
            stages = " ".join(f"{k} {v:.2f}" for k, v in result["stages_ms"].items())
            print(
                f"{meta['sampler']} steps {steps} ({engine.backend} {meta['precision']}, {result['window']} window): {result['fps']:.1f} FPS, "
                f"latency p50 {result['latency_ms']['p50']:.1f} ms p95 {result['latency_ms']['p95']:.1f} ms | {stages} ms"
                + (f" (partial: stopped after {result['frames']} measured frames)" if result.get("partial") else ""),
                flush=True,
            )
            if per_tick > 1 and not stop.requested:
                paced = paced_latency(engine, window, tick_hz, per_tick, interpolation, min(cfg.frames, PACED_TICKS),
                                      cfg.seed, view, cfg.agent, stop)
                if paced is None:  # stopped during the paced runs: the unpaced figures stand, the paced ones are missing
                    result["partial"] = True
                    result["tsr"] = {"display_hz": display_hz, "fps": tick_hz, **result["tsr"]}
                    results.append(result)
                    break
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
    return results


class Stop:
    """Ends a bench at the next frame on SIGTERM or SIGINT: while entered, it holds both signals
    (entered before the window opens, so SDL never installs its own handler, which only posted a
    QUIT that ended one measurement) and quits the play loop running under :meth:`run`; a QUIT
    event (the window closed) stops the bench too. A second signal raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.closed = False  # the play loop quit on its own: the window was closed
        self._loop: PlayLoop | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():  # only it can take signals
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: now, without the report
        self.signum = signum
        if self._loop is not None:
            self._loop.core.quit = True  # the loop ends before its next frame

    @property
    def requested(self) -> bool:
        return self.signum is not None or self.closed

    @property
    def reason(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "the window being closed"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum is not None else 1

    def run(self, loop: PlayLoop) -> bool:
        """Run ``loop`` unless a stop came first; True when it ran to its end (not stopped)."""
        self._loop = loop  # before the check: a signal from here on quits this loop
        try:
            if self.requested:
                return False
            loop.run()
        finally:
            self._loop = None
        if loop.core.quit and self.signum is None:
            self.closed = True
        return not self.requested


def bench_steps(engine: Engine, window: Any, frames: int, warmup: int, seed: int, view: View, soak: bool,
                per_tick: int = 1, interpolation: str = "warp", agent: bool = False,
                stop: Stop | None = None) -> dict[str, Any] | None:
    """Run the play loop unpaced for ``warmup + frames`` frames at the engine's step count
    (``per_tick`` > 1: with TSR's in-between frames, and a ``tsr`` entry for them; ``agent``: the
    checkpoint's agent chooses every action, its forward timed as the ``agent`` stage). Stopped
    (``stop``) before the end: the frames measured so far, marked ``partial``, or None when fewer
    than two were (FPS needs two)."""
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
    if stop is not None:
        finished = stop.run(loop)
    else:
        loop.run()
        finished = True
    if not finished and stats.frames < 2:
        return None
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
    if not finished:
        result.update(partial=True, frames=stats.frames)
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
                  view: View, agent: bool = False, stop: Stop | None = None) -> dict[str, Any] | None:
    """Key-to-frame latency as a player gets it: the play loop paced at ``fps`` for ``ticks`` model
    ticks, without TSR and then with it (``per_tick`` frames shown per model frame); None when
    ``stop`` ended either run (the two are compared, so half is not a figure)."""
    off = _paced_run(engine, window, fps, 1, interpolation, ticks, seed, view, agent, stop)
    on = _paced_run(engine, window, fps, per_tick, interpolation, ticks, seed, view, agent, stop) if off is not None else None
    if off is None or on is None:
        return None
    latency = {"off": _percentiles(off[0]), "on": _percentiles(on[0]),
               "on_first_frame": _percentiles(on[1])}  # to the first in-between frame, the first to show any of it
    return {
        "paced": {"ticks": ticks, "latency_ms": latency, "display_fps": round(on[2].fps(), 2)},
        "added_latency_ms": {q: round(latency["on"][q] - latency["off"][q], 2) for q in ("p50", "p95")},
    }


def _paced_run(engine: Engine, window: Any, fps: float, per_tick: int, interpolation: str, ticks: int, seed: int,
               view: View, agent: bool = False, stop: Stop | None = None) -> tuple[RunStats, RunStats, RunStats] | None:
    """(latency to the model frame, latency to the first frame shown for it, every presented frame);
    None when ``stop`` ended the run."""
    to_frame, to_first, shown = RunStats(), RunStats(), RunStats()

    def on_frame(info: FrameInfo) -> None:
        if info.index > PACED_WARMUP:
            to_frame.add({}, info.latency_ms, info.presented_at)
            to_first.add({}, info.first_latency_ms, info.presented_at)
            shown.add({}, 0.0, info.presented_at)

    def on_between(info: BetweenInfo) -> None:
        if info.index > PACED_WARMUP:
            shown.add({}, 0.0, info.presented_at)

    loop = PlayLoop(engine, window, fps=fps, seed=seed, view=view, script=held_keys(), max_frames=PACED_WARMUP + ticks,
                    on_frame=on_frame, display_per_tick=per_tick, interpolation=interpolation, on_between=on_between, agent=agent)
    if stop is None:
        loop.run()
    elif not stop.run(loop):
        return None
    return to_frame, to_first, shown


def _percentiles(stats: RunStats) -> dict[str, float]:
    return {"p50": round(stats.latency_percentile(50), 2), "p95": round(stats.latency_percentile(95), 2)}


def held_keys() -> Iterator[set[str]]:
    """Endless scripted input: each direction held for 8 frames, then a shot, over and over."""
    pattern = [{"right"}] * 8 + [{"down"}] * 8 + [{"left"}] * 8 + [{"up"}] * 8 + [{"space"}, set()]
    return itertools.cycle(pattern)
