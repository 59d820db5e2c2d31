"""The pygame window every interactive command draws into: a scaled frame area, a HUD strip and
an optional help overlay. Play and replay both use it, so keys and looks stay consistent."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import pygame

from worldgame.errors import WorldgameError

HUD_BG = (12, 12, 18)
HUD_FG = (220, 220, 230)
HUD_WARN = (255, 170, 60)


OFFSCREEN = ("dummy", "offscreen")  # SDL drivers that draw nowhere


def require_display() -> None:
    """Fail with one clear line when no window can be opened, before anything heavy is loaded.

    Off-screen drivers are used only when asked for (``SDL_VIDEODRIVER=dummy`` or ``offscreen``):
    SDL falls back to one silently when the display it was given cannot be opened (e.g. DISPLAY
    names an X server that is not running), and the window would then run invisibly.
    """
    asked = os.environ.get("SDL_VIDEODRIVER", "")
    if asked in OFFSCREEN:
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.name == "posix" and not _is_mac():
        raise WorldgameError(
            "no display available (DISPLAY is unset); run `worldgame bench` for a headless measurement, "
            "or set SDL_VIDEODRIVER=dummy to run the window off-screen"
        )
    with _quiet_stderr():  # SDL prints its own probing failures straight to stderr
        try:
            pygame.display.init()
        except pygame.error as e:
            raise WorldgameError(f"no display available ({e}); check DISPLAY, or set SDL_VIDEODRIVER=dummy to run off-screen") from None
    driver = pygame.display.get_driver()
    if driver in OFFSCREEN:
        pygame.display.quit()
        where = ", ".join(f"{k}={os.environ[k]}" for k in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(k)) or "this machine"
        raise WorldgameError(
            f"no usable display: SDL could not open a window on {where} and fell back to its {driver!r} driver, "
            "so the window would be invisible; check that the display is running, run `worldgame bench` headless, "
            "or set SDL_VIDEODRIVER=dummy to run off-screen on purpose"
        )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_mac() -> bool:
    return os.uname().sysname == "Darwin"


class Window:
    """A window showing ``panels`` frames side by side, each scaled by ``scale`` (nearest), above a HUD.

    Args:
        frame_size: side of one frame in pixels.
        scale: integer zoom of every frame.
        panels: how many frames fit side by side (views like side-by-side use 2-4).
        hud_lines: text lines reserved below the frames.
        title: window caption.
    """

    def __init__(self, frame_size: int, scale: int = 8, panels: int = 1, hud_lines: int = 3, title: str = "worldgame") -> None:
        require_display()
        pygame.display.init()
        pygame.font.init()
        self.frame_size, self.scale, self.title = frame_size, scale, title
        self.font = pygame.font.Font(None, max(16, 2 * scale + 4))
        self.line_h = self.font.get_linesize()
        self.hud_lines = hud_lines
        self.panels = 0
        self._hud_cache: dict[int, tuple[str, tuple[int, int, int], pygame.Surface]] = {}
        self.resize(panels)
        pygame.display.set_caption(title)

    def resize(self, panels: int, scale: int | None = None) -> None:
        """Change the number of side-by-side frame panels and, optionally, their zoom
        (reallocates only when something changes)."""
        scale = self.scale if scale is None else max(1, int(scale))
        if panels == self.panels and scale == self.scale:
            return
        self.panels, self.scale = panels, scale
        side = self.frame_size * self.scale
        self.screen = pygame.display.set_mode((side * panels, side + self.line_h * self.hud_lines + 8))
        self._frame_surface = pygame.Surface((self.frame_size, self.frame_size))
        self._scaled = pygame.Surface((side, side))

    def blit_frame(self, frame: np.ndarray, panel: int = 0, label: str | None = None) -> None:
        """Draw one (H, W, 3) uint8 frame into ``panel``, nearest-scaled, with an optional caption."""
        pygame.surfarray.blit_array(self._frame_surface, frame.swapaxes(0, 1))
        pygame.transform.scale(self._frame_surface, self._scaled.get_size(), self._scaled)
        x = panel * self._scaled.get_width()
        self.screen.blit(self._scaled, (x, 0))
        if label:
            text = self.font.render(label, True, HUD_FG, HUD_BG)
            self.screen.blit(text, (x + 4, 4))

    def draw_hud(self, lines: list[str], warn: set[int] | None = None) -> None:
        """Draw text ``lines`` in the strip below the frames; indices in ``warn`` are highlighted."""
        top = self.frame_size * self.scale
        self.screen.fill(HUD_BG, (0, top, self.screen.get_width(), self.screen.get_height() - top))
        for i, line in enumerate(lines[: self.hud_lines]):
            colour = HUD_WARN if warn and i in warn else HUD_FG
            cached = self._hud_cache.get(i)
            if cached is None or cached[0] != line or cached[1] != colour:  # render text only when it changes
                cached = (line, colour, self.font.render(line, True, colour))
                self._hud_cache[i] = cached
            self.screen.blit(cached[2], (6, top + 4 + i * self.line_h))

    def draw_overlay(self, lines: list[str]) -> None:
        """A translucent box of text over the frames (the H help overlay)."""
        w = max(self.font.size(line)[0] for line in lines) + 24
        h = self.line_h * len(lines) + 16
        box = pygame.Surface((w, h), pygame.SRCALPHA)
        box.fill((0, 0, 0, 200))
        for i, line in enumerate(lines):
            box.blit(self.font.render(line, True, HUD_FG), (12, 8 + i * self.line_h))
        self.screen.blit(box, ((self.screen.get_width() - w) // 2, max(0, (self.frame_size * self.scale - h) // 2)))

    def present(self) -> None:
        pygame.display.flip()

    def snapshot(self) -> np.ndarray:
        """The window's pixels as (H, W, 3) uint8 (for tests and screenshots)."""
        return pygame.surfarray.array3d(self.screen).swapaxes(0, 1).copy()

    def close(self) -> None:
        pygame.display.quit()
