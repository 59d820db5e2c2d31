"""The source's four view modes: which frames the window shows side by side, and with what caption.

* **Stream** — the generated game alone.
* **LCM Steps** — the denoised estimate after each sampling step (what each step adds).
* **Temporal** — the unfused and the fused frame, the fusion weights in the HUD.
* **World Model** — the real game (stepped in lockstep on the same actions) beside the model.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from worldgame.runtime.engines import StepResult

Panel = tuple[np.ndarray, str | None]


class View(str, Enum):
    """A view mode (M or Tab cycles them in the model engine)."""

    STREAM = "stream"
    LCM_STEPS = "lcm_steps"
    TEMPORAL = "temporal"
    WORLD_MODEL = "world_model"

    @property
    def label(self) -> str:
        """Name for the HUD."""
        return {"stream": "Stream", "lcm_steps": "LCM Steps", "temporal": "Temporal", "world_model": "World Model"}[
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
        return {View.STREAM: 1, View.LCM_STEPS: steps, View.TEMPORAL: 2, View.WORLD_MODEL: 2}[self]

    @property
    def needs_steps(self) -> bool:
        """The engine must decode every step's estimate."""
        return self is View.LCM_STEPS

    @property
    def needs_unfused(self) -> bool:
        """The engine must also decode the frame before fusion."""
        return self is View.TEMPORAL


def panels(view: View, result: StepResult, steps: int, fusion_label: str) -> list[Panel]:
    """The frames to draw for ``view`` from one engine result.

    Where the result lacks what the view needs (the view was switched while paused, or the real
    engine), the shown frame stands in, captioned so, until the next frame brings the real thing.
    """
    frame = result.frame
    if view is View.STREAM:
        return [(frame, None)]
    if view is View.LCM_STEPS:
        sf = result.step_frames
        if sf is None or len(sf) != steps:
            return [(frame, "(next frame)")] * steps
        ts = result.step_timesteps or [None] * steps
        return [(sf[i], f"step {i + 1}" + (f" t={ts[i]}" if ts[i] is not None else "")) for i in range(steps)]
    if view is View.TEMPORAL:
        unfused = result.unfused if result.unfused is not None else frame
        return [(unfused, "unfused"), (frame, f"fused: {fusion_label}")]
    real = result.real if result.real is not None else frame
    return [(real, "real game"), (frame, "model")]
