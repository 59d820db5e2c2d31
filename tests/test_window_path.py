"""The window path: the loop drives any engine through its interface (live controls, per-view
requests, a status snapshot for the HUD), the window draws without per-frame surfaces or text
rendering, and `worldgame bench display=true` measures through a real window (Xvfb where present)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pygame
import pytest

from worldgame.engine.engines import EngineStatus, FusionMode, StepResult, Wants
from worldgame.engine.hud import HUD_LINES
from worldgame.engine.views import View
from worldgame.frontend.controls import tap
from worldgame.frontend.loop import PlayLoop
from worldgame.frontend.window import Window

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StubEngine:
    """An engine with every live control, answering from numpy alone; it logs each call."""

    kind = "stub"
    live = frozenset({"steps", "fusion", "views", "resync"})
    frame_size, native_size = 16, None
    action_names, key_bindings = ["NOOP", "RIGHT"], {"RIGHT": ["right"]}

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.steps, self.fusion, self.wants = 4, FusionMode.off, Wants()

    def reset(self, seed: int) -> np.ndarray:
        self.calls.append(("reset", seed))
        return np.zeros((16, 16, 3), np.uint8)

    def step(self, action: int) -> StepResult:
        self.calls.append(("step", action))
        f, w = np.full((16, 16, 3), len(self.calls), np.uint8), self.wants
        return StepResult(f, step_frames=np.stack([f] * self.steps) if w.step_frames else None,
                          unfused=f if w.unfused else None, real=f if w.real else None)

    def set_steps(self, steps: int) -> None:
        self.calls.append(("steps", steps))
        self.steps = steps

    def set_fusion(self, mode: FusionMode) -> None:
        self.calls.append(("fusion", mode))
        self.fusion = mode

    def resync(self) -> None:
        self.calls.append(("resync",))

    def want(self, wants: Wants) -> None:
        self.calls.append(("want", wants))
        self.wants = wants

    def status(self) -> EngineStatus:
        return EngineStatus(steps=self.steps, fusion=self.fusion, real_score="7")

    def state(self) -> None:
        return None


def test_loop_drives_an_engine_only_through_its_interface():
    engine, window = StubEngine(), Window(16, 2, hud_lines=HUD_LINES)
    try:
        script = [{"right"}, tap("2"), tap("f"), tap("m"), tap("m"), tap("m"), tap("y"), [], tap("p"), tap("y"), [], tap("p")]
        loop = PlayLoop(engine, window, fps=0, seed=4, script=script)
        hud = []
        loop.on_frame = lambda f: hud.append("\n".join(loop._hud[0]))
        loop.run()
        calls = [c for c in engine.calls if c[0] != "want"]
        assert calls == [("reset", 4), ("step", 1), ("steps", 2), ("step", 1), ("fusion", FusionMode.pixel), ("step", 1),
                         ("step", 1), ("step", 1), ("step", 1), ("resync",), ("step", 1), ("step", 0),
                         ("resync",), ("step", 0)]  # Y while paused waits for the next stepped frame
        wants = [c[1] for c in engine.calls if c[0] == "want"]
        assert wants[0] == Wants() and Wants(step_frames=True) in wants and wants[-1] == Wants(real=True)
        assert window.panels == 2 and "steps 2 | fusion φ pixel | view World Model" in hud[-1]
        assert "real game 7" in hud[-1]  # the HUD reads the status snapshot
    finally:
        window.close()


def test_real_engine_refuses_live_controls_with_a_notice(play_config):
    from worldgame.commands.play import play

    views = []
    summary = play(play_config("engine=real", "fps=0"), script=[tap("2"), tap("f"), tap("m"), tap("y"), set()],
                   on_frame=lambda f: views.append(f.view))
    assert summary.frames == 5 and set(views) == {View.stream}  # the keys only say "model engine only"


class _CountingFont:
    def __init__(self, font: pygame.font.Font) -> None:
        self.font, self.renders = font, 0

    def render(self, *args):
        self.renders += 1
        return self.font.render(*args)

    def __getattr__(self, name):
        return getattr(self.font, name)


def test_window_draws_without_new_surfaces_and_renders_text_only_when_it_changes(monkeypatch):
    window = Window(64, 4, hud_lines=3)
    try:
        frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        lines = ["FPS 30.0", "input 0.1 ms", "MODEL | steps 4"]
        window.blit_frame(frame, 0, "model")
        window.draw_hud(lines)
        window.present()
        font = window.font = _CountingFont(window.font)
        surfaces, sent = [], []
        real_surface = pygame.Surface
        monkeypatch.setattr(pygame, "Surface", lambda *a, **k: surfaces.append(a) or real_surface(*a, **k))
        monkeypatch.setattr(pygame.display, "update", lambda rects: sent.append([tuple(r) for r in rects]))
        for _ in range(5):  # steady state: the same caption and HUD text
            window.blit_frame(frame, 0, "model")
            window.draw_hud(list(lines))
            window.present()
        assert surfaces == [] and font.renders == 0
        assert sent[-1] == [(0, 0, 256, 256)]  # only the frame panel goes to the display
        window.draw_hud([*lines[:2], "MODEL | steps 2"])
        window.present()
        assert font.renders == 1 and sent[-1][0][1] == 256  # one line rendered; the HUD strip sent
        window.handle(pygame.event.Event(pygame.WINDOWEXPOSED))
        window.present()
        assert sent[-1] == [(0, 0, *window.screen.get_size())]  # uncovered: all of it again
        shown = window.snapshot()
        assert np.array_equal(shown[40:256], np.repeat(np.repeat(frame, 4, 0), 4, 1)[40:])  # below the caption
    finally:
        window.close()


def test_a_hud_line_wider_than_a_narrow_window_goes_on_in_the_next_row():
    """A narrow game's window (Pong, Boxing at a small zoom) cut the HUD's long second line; now its
    words go on in the next row, and the strip grows once when the rows outnumber it."""
    window = Window(32, 2, hud_lines=2)
    try:
        width, height = window.screen.get_size()
        long = "score 12 lives 3 · agent at the controls (G) · fusion off (F) · recording to sessions/x.wgep"
        drawn: list[str] = []
        real = window._render
        window._render = lambda text, *a: drawn.append(text) or real(text, *a)
        frame = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        window.blit_frame(frame)
        window.draw_hud(["FPS 30", long])
        assert " ".join(drawn[1:]) == long and len(drawn) > 2  # every word shown, over more than one row
        assert np.array_equal(window.snapshot()[:64, :64], np.repeat(np.repeat(frame, 2, 0), 2, 1))  # the frame stays
        assert all(window.font.size(row)[0] <= width - 12 for row in drawn[1:] if " " in row)
        assert window.screen.get_size() == (width, height + (len(drawn) - 2) * window.line_h)
        drawn.clear()
        window.draw_hud(["FPS 31", long])  # the strip is tall enough now: no second growth
        assert window.screen.get_size()[1] == height + (len(drawn) - 2) * window.line_h
    finally:
        window.close()


def _bench(env: dict[str, str], checkpoint, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldgame.cli", "bench", f"checkpoint={checkpoint}", "steps=[1]",
                           "frames=8", "warmup=2", "backend=torch", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_bench_display_true_runs_the_window_it_is_given(tiny_checkpoint):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    r = _bench({**env, "SDL_VIDEODRIVER": "dummy"}, tiny_checkpoint, "display=true")  # asked for off-screen
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(report) == {"device", "threads", "results"} and report["results"][0]["window"] == "dummy"
    if sys.platform.startswith("linux"):
        r = _bench(env, tiny_checkpoint, "display=true")  # no display at all: one line, no measurement
        assert r.returncode == 1 and "no display available" in r.stderr and r.stderr.strip().count("\n") == 0


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_bench_display_true_in_an_x_window(tiny_checkpoint):
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            display = f.readline().strip()  # Xvfb picks a free display number and writes it when ready
        assert display, "Xvfb did not start"
        env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}
        r = _bench({**env, "DISPLAY": f":{display}"}, tiny_checkpoint, "display=true")
        assert r.returncode == 0, r.stderr
        (result,) = json.loads(r.stdout.strip().splitlines()[-1])["results"]
        assert result["window"] == "x11" and result["fps"] > 0 and result["stages_ms"]["present"] > 0
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def test_the_window_opens_with_its_title(monkeypatch) -> None:
    """The SDL window's own title, read the moment the window exists: never pygame's default."""
    from pygame._sdl2.video import Window as SdlWindow

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame.display.quit()  # a fresh display, as a new `worldgame play` process has
    seen: list[str] = []

    class Watched(Window):
        def resize(self, panels: int, scale: int | None = None) -> None:
            super().resize(panels, scale)
            seen.append(SdlWindow.from_display_module().title)

    window = Watched(16, 2, title="worldgame — bouncer (model)")
    try:
        assert seen[0] == "worldgame — bouncer (model)"
    finally:
        window.close()
