"""`worldgame replay path=FILE_OR_FOLDER`: step through recorded episodes and sessions in the window,
export one to a video (``export=out.mp4|out.gif``, headless), or re-run a model session
(``regenerate=true``) and report whether the model reproduces its frames.

Keys: Space pause/resume, ←/→ one frame (pauses), PgUp/PgDn ten frames, Home start, End last
frame, N/B next/previous episode of a folder, H help, Esc or closing the window quits.
Playback advances one frame per tick at ``fps`` and pauses on an episode's last frame.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worldgame.data.episode import Episode, list_episodes, read_episode, read_metadata
from worldgame.engine.keys import COLUMNS
from worldgame.errors import WorldgameError
from worldgame.frontend.export import check_export_path, check_fps, export_episode
from worldgame.settings import ReplaySettings

if TYPE_CHECKING:
    from typing import TypeAlias

    import pygame

    from worldgame.frontend.window import Window

    ScriptedKey: TypeAlias = int | pygame.event.Event | None

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

HELP = [
    "replay keys",
    "Space    pause / resume",
    "<- / ->  one frame back / forward",
    "PgUp / PgDn  ten frames back / forward",
    "Home / End   first / last frame",
    "N / B    next / previous episode",
    "H        this help",
    "Esc      quit",
]
HUD_LINES = 4
SETTING_COLUMNS = ("event", *(c.name for c in COLUMNS))  # the per-frame settings a session records (not timings)


@dataclass
class ReplayState:
    """Where the replay stands; ``run_window`` returns it when the loop ends."""

    episode: int = 0  # index into the list of files
    frame: int = 0  # row of the current episode on screen
    paused: bool = False
    help: bool = False
    running: bool = True
    iterations: int = 0  # loop ticks run
    snapshot: np.ndarray | None = None  # the window's last presented pixels (H, W, 3)


def run(cfg: ReplaySettings) -> Any:
    """Hydra entry point: regenerate, export, or open the replay window, as ``cfg`` asks."""
    if not cfg.path:
        raise WorldgameError("say what to replay: path=FILE.wgep or path=FOLDER")
    files = list_episodes(cfg.path)
    index = select(files, cfg.episode, cfg.path)
    scale, fps = cfg.scale, cfg.fps or recorded_tick_hz(files[index])
    if cfg.export:  # a bad name, the input itself, a read-only target or fps fail before any work
        check_fps(fps, check_export_path(cfg.export, files[index]).suffix)
    if not cfg.export and not cfg.regenerate:
        return run_window(files, index, scale=scale, fps=fps)
    result: Any = None
    if cfg.export:
        episode = load(files[index])
        out = export_episode(episode, cfg.export, fps=fps, scale=scale, hud=cfg.hud, progress=cfg.progress)
        print(f"wrote {len(episode)} frames of {files[index]} to {out}")
        result = str(out)
    if cfg.regenerate:
        result = run_regenerate(files[index], cfg.device, progress=cfg.progress, max_steps=cfg.max_steps)
    return result


def recorded_tick_hz(path: Path) -> float:
    """The game's own speed as the file records it (``tick_hz``; Atari 15, Bouncer 30), else 30."""
    try:
        tick = read_metadata(path).get("tick_hz")
    except (OSError, ValueError, WorldgameError):
        return 30.0  # the file's own problem is reported when it is opened
    return float(tick) if type(tick) in (int, float) and 1 <= tick <= 1000 else 30.0


def select(files: list[Path], episode: int, path: object) -> int:
    """Check ``episode`` against the files found (negative counts from the end); return the index."""
    n = len(files)
    if not -n <= episode < n:
        raise WorldgameError(f"episode={episode} is out of range: {path} holds {n} episode(s), numbered 0..{n - 1}")
    return episode % n


def load(path: Path) -> Episode:
    """``read_episode``, with the warning for an unfinished file turned into one stderr line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episode = read_episode(path)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return episode


def run_regenerate(path: Path, device: str, progress: bool = True, max_steps: int | None = None) -> dict[str, Any]:
    """Re-run the model of a recorded session; print a summary, then the result as one JSON line.
    ``progress`` shows a progress bar on a terminal."""
    meta = load(path).metadata
    if meta.get("policy") != "model" and "checkpoint" not in meta:
        raise WorldgameError(
            f"{path} is a {meta.get('policy', 'non-model')} episode, not a model session; "
            "regenerate needs a session recorded by `worldgame play engine=model record=true`"
        )
    from worldgame.engine.session import regenerate  # imports torch: only when asked

    def announce(checkpoint: str, work: int) -> None:  # once the session checks out: torch and the model take seconds
        print(f"loading {checkpoint} ... (then {work:,} network steps)", flush=True)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unfinished")  # already noted by load() above
        result = regenerate(path, device=device, progress=progress, announce=announce, max_steps=max_steps)
    if result["identical"]:
        print(f"regenerated {result['frames']} frames of {path}: bit-identical to the recording")
    else:
        print(
            f"regenerated {result['frames']} frames of {path}: differ from the recording "
            f"(PSNR {result['psnr']:.2f} dB, max abs diff {result['max_abs_diff']})"
        )
    # identical frames have infinite PSNR; JSON has no Infinity, so it is written as null
    print(json.dumps({**result, "psnr": result["psnr"] if math.isfinite(result["psnr"]) else None}))
    return result


def run_window(
    files: list[Path],
    episode: int = 0,
    scale: int = 8,
    fps: float = 30,
    keys: Iterable[ScriptedKey] | None = None,
    max_iterations: int | None = None,
) -> ReplayState:
    """Show ``files[episode]`` in the window and run the replay loop until Esc or the window closes.

    Args:
        files: the episodes that N/B step through.
        episode: index of the first one shown.
        scale: integer zoom of the frames.
        fps: ticks per second; playback advances one frame per tick.
        keys: scripted input for headless runs: one item per tick, posted as a KEYDOWN before the
            tick's events are read (an int key code, a ready pygame event, or None for no key).
        max_iterations: stop after this many ticks (None: run until quit).

    Returns:
        the final state, with a snapshot of the last presented window.
    """
    current = load(files[episode])  # a damaged first file is one clear error, before any window
    from worldgame.frontend.window import require_display

    try:
        require_display()
    except WorldgameError as e:
        raise WorldgameError(f"replay window: {e}; or use export=out.mp4 to write a video without a window") from None
    player = _Player(files, episode, current, scale)
    try:
        return player.loop(fps, keys, max_iterations)
    finally:
        player.close()


class _Player:
    """The replay loop: one Window, the episode on screen, and the key handling."""

    def __init__(self, files: list[Path], index: int, episode: Episode, scale: int) -> None:
        import pygame

        self.pg = pygame
        self.files, self.scale = files, scale
        self.state = ReplayState(episode=index)
        self.window: Window | None = None
        self._show(index, episode)

    def loop(self, fps: float, keys: Iterable[ScriptedKey] | None, max_iterations: int | None) -> ReplayState:
        pg, state = self.pg, self.state
        script = iter(keys) if keys is not None else None
        clock = pg.time.Clock()
        while state.running and (max_iterations is None or state.iterations < max_iterations):
            if state.iterations and not state.paused:
                self._advance()
            if script is not None:
                self._post(next(script, None))
            for event in pg.event.get():
                self.window.handle(event)
                if event.type == pg.QUIT:
                    state.running = False
                elif event.type == pg.KEYDOWN:
                    self._key(event.key)
            self._draw()
            state.iterations += 1
            clock.tick(fps)
        assert self.window is not None
        state.snapshot = self.window.snapshot()
        return state

    def close(self) -> None:
        if self.window is not None:
            self.window.close()

    # --- state changes -------------------------------------------------------------------------

    def _advance(self) -> None:
        last = self._last()
        self.state.frame = min(self.state.frame + 1, last)
        if self.state.frame == last:
            self.state.paused = True

    def _key(self, key: int) -> None:
        pg, s, last = self.pg, self.state, self._last()
        if key == pg.K_ESCAPE:
            s.running = False
        elif key == pg.K_SPACE:
            s.paused = not s.paused
            if not s.paused and s.frame == last:
                s.frame = 0  # resume at the end: play again from the start
        elif key in (pg.K_RIGHT, pg.K_LEFT):
            s.paused = True
            s.frame = min(max(s.frame + (1 if key == pg.K_RIGHT else -1), 0), last)
        elif key in (pg.K_PAGEDOWN, pg.K_PAGEUP):
            s.frame = min(max(s.frame + (10 if key == pg.K_PAGEDOWN else -10), 0), last)
        elif key == pg.K_HOME:
            s.frame = 0
        elif key == pg.K_END:
            s.frame = last
        elif key in (pg.K_n, pg.K_b):
            target = min(max(s.episode + (1 if key == pg.K_n else -1), 0), len(self.files) - 1)
            if target != s.episode:
                self._show(target, self._try_load(self.files[target]))
        elif key == pg.K_h:
            s.help = not s.help

    def _post(self, key: ScriptedKey) -> None:
        if key is None:
            return
        event = key if isinstance(key, self.pg.event.EventType) else self.pg.event.Event(
            self.pg.KEYDOWN, key=int(key), mod=0, unicode="", scancode=0
        )
        self.pg.event.post(event)

    # --- episodes --------------------------------------------------------------------------------

    def _try_load(self, path: Path) -> Episode | WorldgameError:
        """A damaged file met while browsing is shown in the HUD instead of ending the replay."""
        try:
            return load(path)
        except WorldgameError as e:
            return e

    def _show(self, index: int, episode: Episode | WorldgameError) -> None:
        from worldgame.frontend.window import Window

        self.state.episode, self.state.frame = index, 0
        self.episode = episode
        if isinstance(episode, Episode):
            self.returns = np.cumsum(episode.rewards, dtype=np.float64)
            self.names = list(episode.metadata.get("action_names") or [])
            size = max(episode.frames.shape[1:3])
            native = episode.metadata.get("native_size") if episode.frames.shape[1] == episode.frames.shape[2] else None
        else:
            size = self.window.frame_size if self.window else 64
            native = self.window.native_size if self.window else None
        if self.window is None or self.window.frame_size != size:
            if self.window is not None:
                self.window.close()
            try:
                self.window = Window(size, self.scale, hud_lines=HUD_LINES, title="worldgame replay", native_size=native)
            except self.pg.error as e:
                raise WorldgameError(f"cannot open a window ({e}); use export=out.mp4 to watch without one") from e
        else:
            self.window.set_native_size(native)
        self.pg.display.set_caption(f"worldgame replay - {self.files[index].name}")

    def _last(self) -> int:
        return len(self.episode) - 1 if isinstance(self.episode, Episode) else 0

    # --- drawing ---------------------------------------------------------------------------------

    def _draw(self) -> None:
        w, s = self.window, self.state
        assert w is not None
        head = f"episode {s.episode + 1}/{len(self.files)}  {self.files[s.episode].name}"
        if isinstance(self.episode, WorldgameError):
            w.blit_frame(np.zeros((w.frame_size, w.frame_size, 3), np.uint8))
            w.draw_hud([head, f"damaged: {self.episode}", "N / B: other episodes   Esc: quit"], warn={1})
        else:
            w.blit_frame(_square(self.episode.frames[s.frame], w.frame_size))
            w.draw_hud([head, *self._hud_lines()], warn={2} if self.episode.dones[s.frame] else None)
        if s.help:
            w.draw_overlay(HELP)
        w.present()

    def _hud_lines(self) -> list[str]:
        ep, t = self.episode, self.state.frame
        assert isinstance(ep, Episode)
        a = int(ep.actions[t])
        action = "(reset)" if t == 0 else (self.names[a] if 0 <= a < len(self.names) else str(a))
        flags = ("  PAUSED" if self.state.paused else "") + ("" if ep.complete else "  unfinished file")
        policy = ep.metadata.get("policy", "?")
        # the per-frame settings as recorded (steps, fusion, context noise 0.05, the chance code), then timings in ms
        cols = {k: v[t] for k, v in ep.timings_ms.items() if t < len(v)}
        settings = "  ".join(f"{k} {v:g}" for k, v in cols.items() if k in SETTING_COLUMNS)
        ms = "  ".join(f"{k} {v:.1f}" for k, v in cols.items() if k not in SETTING_COLUMNS)
        timings = "  ".join(x for x in (settings, f"ms  {ms}" if ms else "") if x)
        return [
            f"frame {t}/{len(ep) - 1}  action {action}  policy {policy}{flags}",
            f"reward {ep.rewards[t]:+g}  return {self.returns[t]:g}  done {'YES' if ep.dones[t] else 'no'}",
            timings or "H help",
        ]


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    """Pad a frame with black to ``size`` x ``size`` (the window shows square frames)."""
    h, w = frame.shape[:2]
    if h == w == size:
        return frame
    out = np.zeros((size, size, 3), np.uint8)
    out[:h, :w] = frame
    return out
