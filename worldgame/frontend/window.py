"""The pygame window every interactive command draws into: a scaled frame area, a HUD strip and
an optional help overlay. Play and replay both use it, so keys and looks stay consistent."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import pygame

from worldgame.engine.views import display_size, parse_native_size
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

    Drawing allocates nothing per frame: a frame is written into one small surface in the
    window's own pixel format and scaled straight into its panel of the window (no intermediate
    surface, no format conversion); text (HUD lines, captions, the help box) is rendered once per
    distinct string and kept; the HUD strip is redrawn only when its text changes, and
    :meth:`present` sends the display only the areas drawn since the last one.

    Args:
        frame_size: side of one frame in pixels.
        scale: integer zoom of every frame.
        panels: how many frames fit side by side (views like side-by-side use 2-4).
        hud_lines: text lines reserved below the frames.
        title: window caption.
        native_size: the game's own frame (height, width); frames are shown at that aspect
            (``views.display_size``). None: square.
    """

    TEXT_CACHE = 256  # rendered strings kept (captions with timesteps, HUD lines); cleared when full

    def __init__(
        self,
        frame_size: int,
        scale: int = 8,
        panels: int = 1,
        hud_lines: int = 3,
        title: str = "worldgame",
        native_size: object = None,
    ) -> None:
        require_display()
        pygame.display.init()
        pygame.font.init()
        self.frame_size, self.scale, self.title = frame_size, scale, title
        self.native_size = parse_native_size(native_size)
        self.font = pygame.font.Font(None, max(16, 2 * scale + 4))
        self.line_h = self.font.get_linesize()
        self.hud_lines = hud_lines
        self.panels = 0
        self._text: dict[tuple, pygame.Surface] = {}
        self._overlay: tuple[tuple[list[str], bool], pygame.Surface] | None = None
        self._title_font: pygame.font.Font | None = None
        pygame.display.set_caption(title)  # before the window exists: it opens with its title, never "pygame window"
        self.resize(panels)

    def resize(self, panels: int, scale: int | None = None) -> None:
        """Change the number of side-by-side frame panels and, optionally, their zoom
        (reallocates only when something changes)."""
        scale = self.scale if scale is None else max(1, int(scale))
        if panels == self.panels and scale == self.scale:
            return
        self.panels, self.scale = panels, scale
        w, h = self.panel_size()
        self.screen = pygame.display.set_mode((w * panels, h + self.line_h * self.hud_lines + 8))
        self._frame_surface = pygame.Surface((self.frame_size, self.frame_size), 0, self.screen)  # the window's format
        self._panel_rects = [pygame.Rect(i * w, 0, w, h) for i in range(panels)]
        self._panels = [self.screen.subsurface(r) for r in self._panel_rects]
        self._hud_shown: tuple[list[str], set[int] | None] | None = None  # the strip is blank: draw it
        self._dirty: list[pygame.Rect] = [self.screen.get_rect()]  # areas drawn since the last present

    def panel_size(self, scale: int | None = None) -> tuple[int, int]:
        """(width, height) of one frame panel at ``scale`` (default: the current one)."""
        return display_size(self.frame_size, self.native_size, self.scale if scale is None else scale)

    def set_native_size(self, native_size: object) -> None:
        """Show frames at the aspect of a game whose own frames are ``native_size`` (height, width)."""
        native = parse_native_size(native_size)
        if native != self.native_size:
            self.native_size = native
            panels, self.panels = self.panels, 0  # makes resize() reallocate
            self.resize(panels)

    def blit_frame(self, frame: np.ndarray, panel: int = 0, label: str | None = None) -> None:
        """Draw one (H, W, 3) uint8 frame into ``panel``, nearest-scaled, with an optional caption."""
        pygame.surfarray.blit_array(self._frame_surface, frame.swapaxes(0, 1))
        target = self._panels[panel]
        pygame.transform.scale(self._frame_surface, target.get_size(), target)
        self._dirty.append(self._panel_rects[panel])
        if label:
            target.blit(self._render(label, HUD_FG, HUD_BG), (4, 4))

    def draw_hud(self, lines: list[str], warn: set[int] | None = None) -> None:
        """Draw text ``lines`` in the strip below the frames; indices in ``warn`` are highlighted.
        Nothing is drawn when the strip already shows exactly this."""
        if self._hud_shown is not None and self._hud_shown == (lines, warn):
            return
        # a line wider than the window goes on in the next row (a narrow game's window would cut it);
        # the strip grows, once, when the rows outnumber it
        rows = [(row, i) for i, line in enumerate(lines) for row in self._wrap(line)]
        if len(rows) > self.hud_lines:
            shown = self.screen.copy()  # the frames already drawn this tick stay on screen
            self.hud_lines, panels, self.panels = len(rows), self.panels, 0
            self.resize(panels)  # a taller window, once
            self.screen.blit(shown, (0, 0), (0, 0, shown.get_width(), self._panels[0].get_height()))
        self._hud_shown = (list(lines), set(warn) if warn else warn)
        top = self._panels[0].get_height()
        self._dirty.append(self.screen.fill(HUD_BG, (0, top, self.screen.get_width(), self.screen.get_height() - top)))
        for n, (row, i) in enumerate(rows):
            self.screen.blit(self._render(row, HUD_WARN if warn and i in warn else HUD_FG), (6, top + 4 + n * self.line_h))

    def _wrap(self, line: str) -> list[str]:
        """``line`` as rows that fit the window's width, broken between words."""
        room = self.screen.get_width() - 12
        if self.font.size(line)[0] <= room:
            return [line]
        rows: list[str] = []
        for word in line.split(" "):
            if rows and self.font.size(f"{rows[-1]} {word}")[0] <= room:
                rows[-1] = f"{rows[-1]} {word}"
            else:
                rows.append(word)
        return rows

    def draw_overlay(self, lines: list[str], title: bool = False) -> None:
        """A translucent box of text over the frames (the H help, the GAME OVER screen); ``title``:
        the first line large and centred."""
        if self._overlay is None or self._overlay[0] != (lines, title):
            rendered = [self.font.render(line, True, HUD_FG) for line in lines]
            if title:
                if self._title_font is None:  # made once, on the first game over
                    self._title_font = pygame.font.Font(None, 2 * self.font.get_height())
                rendered[0] = self._title_font.render(lines[0], True, HUD_WARN)
            w = max(r.get_width() for r in rendered) + 24
            box = pygame.Surface((w, sum(r.get_height() for r in rendered) + 16), pygame.SRCALPHA)
            box.fill((0, 0, 0, 200))
            y = 8
            for i, r in enumerate(rendered):
                box.blit(r, ((w - r.get_width()) // 2 if title else 12, y))
                y += r.get_height()
            self._overlay = ((list(lines), title), box)
        box = self._overlay[1]
        top = max(0, (self._panels[0].get_height() - box.get_height()) // 2)
        self._dirty.append(self.screen.blit(box, ((self.screen.get_width() - box.get_width()) // 2, top)))
        if top + box.get_height() > self._panels[0].get_height():
            self._hud_shown = None  # the box reaches into the HUD strip: redraw it next time

    def handle(self, event: pygame.event.Event) -> None:
        """Window events: where the system uncovered the window, send all of it at the next present
        (only the areas drawn are sent otherwise, and an unchanged HUD is not redrawn)."""
        if event.type in (pygame.WINDOWEXPOSED, pygame.VIDEOEXPOSE):
            self._dirty.append(self.screen.get_rect())

    def present(self) -> None:
        """Show what was drawn since the last call (only those areas are sent to the display)."""
        pygame.display.update(self._dirty)
        self._dirty.clear()

    def snapshot(self) -> np.ndarray:
        """The window's pixels as (H, W, 3) uint8 (for tests and screenshots)."""
        return pygame.surfarray.array3d(self.screen).swapaxes(0, 1).copy()

    def close(self) -> None:
        pygame.display.quit()

    def _render(self, text: str, colour: tuple[int, int, int], background: tuple[int, int, int] | None = None) -> pygame.Surface:
        key = (text, colour, background)
        surface = self._text.get(key)
        if surface is None:
            if len(self._text) >= self.TEXT_CACHE:
                self._text.clear()
            surface = self._text[key] = self.font.render(text, True, colour, background)
        return surface
