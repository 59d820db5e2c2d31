"""The shared words, at the bottom of the package: the names settings, the engine, the window, the
web page and eval all speak, defined once here and importing nothing of the package.

* :data:`STEP_COUNTS` — the sampling step counts the play samplers run (keys 1/2/4/8);
* :data:`PLAY_STEPS` — the step count played where nothing chooses one;
* :data:`PHI` — the golden ratio, the display fusion's default decay base;
* :class:`FusionMode` — where the display fusion applies (the ``fusion=`` setting, key F);
* :class:`View` — which frames the window and the page show (the ``view=`` setting, key M / Tab);
* :class:`Interpolation` — how in-between frames are made (the ``display_interp=`` setting).

Members are named as they are typed (hydra reads a setting by name); each enum is a StrEnum, so a
member equals its name as text and prints as it.
"""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["PHI", "PLAY_STEPS", "STEP_COUNTS", "FusionMode", "Interpolation", "View"]

STEP_COUNTS = (1, 2, 4, 8)  # sampling steps the play samplers run (keys 1/2/4/8; prepared before play)
PLAY_STEPS = 4  # the steps play runs where neither the setting nor the checkpoint's "play" chooses
PHI = (1 + math.sqrt(5)) / 2  # the golden ratio (1.618033988749895): fusion's default decay base


class FusionMode(StrEnum):
    """Where fusion is applied: not at all, on latents before decoding, or on decoded pixels.
    The ``fusion=`` setting (settings/): members are named as they are typed."""

    off = "off"
    latent = "latent"
    pixel = "pixel"

    @property
    def label(self) -> str:
        """Short name for the HUD."""
        return {"off": "off", "latent": "φ latent", "pixel": "φ pixel"}[self.value]

    def next(self) -> FusionMode:
        """The next mode in the F-key cycle: off → φ pixel → φ latent → off (pixel first: in the fusion
        study, docs/fusion.md, it is no worse than latent on any measure and ghosts less)."""
        cycle = [FusionMode.off, FusionMode.pixel, FusionMode.latent]
        return cycle[(cycle.index(self) + 1) % len(cycle)]

    @property
    def code(self) -> int:
        """Stable integer code stored per frame in sessions (0 off, 1 latent, 2 pixel)."""
        return list(FusionMode).index(self)

    @classmethod
    def parse(cls, value: str | int | FusionMode) -> FusionMode:
        """From a config string, a session code or a mode."""
        if isinstance(value, FusionMode):
            return value
        if value is False:  # YAML reads a bare `off` as false
            return cls.off
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return list(cls)[int(value)]
        return cls(str(value).lower())


class View(StrEnum):
    """A view mode (M or Tab cycles them in the model engine); the ``view=`` setting (settings/play.py).
    What each view draws and asks of the engine: engine/views.py."""

    stream = "stream"
    lcm_steps = "lcm_steps"
    temporal = "temporal"
    world_model = "world_model"

    @property
    def label(self) -> str:
        """Name for the HUD."""
        return {"stream": "Stream", "lcm_steps": "Steps", "temporal": "Temporal", "world_model": "World Model"}[
            self.value
        ]

    def next(self) -> View:
        """The next view in the cycle."""
        views = list(View)
        return views[(views.index(self) + 1) % len(views)]

    @classmethod
    def parse(cls, value: str | View) -> View:
        """From a config value ('stream', 'lcm_steps', 'temporal', 'world_model')."""
        return value if isinstance(value, View) else cls(str(value).lower())

    def panel_count(self, steps: int) -> int:
        """How many frames this view shows side by side at ``steps`` LCM steps."""
        return {View.stream: 1, View.lcm_steps: steps, View.temporal: 2, View.world_model: 2}[self]


class Interpolation(StrEnum):
    """How in-between frames are made (the ``display_interp=`` setting; frontend/tsr.py makes them)."""

    warp = "warp"  # motion-compensated: sharp
    blend = "blend"  # a 50/50 mix: ghosts
