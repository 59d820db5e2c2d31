"""The source's four view modes: which frames the window shows side by side, and with what caption;
and the size a frame is shown at (``display_size``, shared by the window and video export).

* **Stream** — the generated game alone.
* **Steps** (``view=lcm_steps``) — the denoised estimate after each sampling step of whichever sampler plays (what each step adds).
* **Temporal** — the unfused and the fused frame, the fusion weights in the HUD.
* **World Model** — the real game (on the same actions, engine/lockstep.py) beside the model.

Each view tells the engine what it will draw (:func:`wants`), so the engine computes nothing else.
"""

from __future__ import annotations

import math

import numpy as np

from worldgame.engine.engines import EngineStatus, StepResult, Wants
from worldgame.vocabulary import FusionMode, View  # the view modes (defined with the other shared words)

Panel = tuple[np.ndarray, str | None]
MAX_NATIVE_SIDE = 4096
MAX_NATIVE_ASPECT = 8  # longer side over shorter: a window at 4096:1 cannot open


def parse_native_size(value: object) -> tuple[int, int] | None:
    """A game's own frame geometry ``(height, width)`` from metadata's ``native_size`` (or a game's
    attribute); None, meaning square, for anything but two whole numbers in 1..4096 at most 8:1 (the value may
    come from any file, so nothing else is trusted)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= MAX_NATIVE_SIDE for v in value
    ) and max(value) <= MAX_NATIVE_ASPECT * min(value):
        return int(value[0]), int(value[1])
    return None


def display_size(frame_size: int, native_size: object, scale: int) -> tuple[int, int]:
    """``(width, height)`` to show a square ``frame_size`` frame at its game's own aspect ratio.

    Square games (or no valid ``native_size``): ``frame_size * scale`` a side, as always. Otherwise
    about the same area at the native aspect: the longer side gets a whole zoom of
    ``frame_size`` (so its pixels stay even), the shorter side the matching length.
    """
    native = parse_native_size(native_size)
    side = frame_size * scale
    if native is None or native[0] == native[1]:
        return side, side
    h, w = native
    long_side = frame_size * max(1, round(scale * math.sqrt(max(h, w) / min(h, w))))
    short_side = max(1, round(long_side * min(h, w) / max(h, w)))
    return (short_side, long_side) if h > w else (long_side, short_side)


def wants(view: View) -> Wants:
    """What the engine must compute for ``view`` besides the frame."""
    return Wants(step_frames=view is View.lcm_steps, unfused=view is View.temporal, real=view is View.world_model)


def detail(view: View, status: EngineStatus) -> str:
    """The HUD's line about ``view`` ("" for Stream)."""
    if view is View.temporal:
        weights = status.fusion_weights
        return "weights " + " ".join(f"{w:.2f}" for w in weights) if weights else "fusion off: F turns it on"
    return {View.lcm_steps: "denoised estimate after each LCM step",
            View.world_model: "left: real game, right: model | Y re-syncs"}.get(view, "")


def panels(view: View, result: StepResult, status: EngineStatus) -> list[Panel]:
    """The frames to draw for ``view`` from one engine result.

    Where the result lacks what the view needs (the view was switched while paused, or the real
    engine), the shown frame stands in, captioned so, until the next frame brings the real thing.
    """
    frame = result.frame
    if view is View.stream:
        return [(frame, None)]
    steps = status.steps or 1
    if view is View.lcm_steps:
        sf = result.step_frames
        if sf is None or len(sf) != steps:
            return [(frame, "(next frame)")] * steps
        ts = result.step_timesteps or [None] * steps
        return [(sf[i], f"step {i + 1}" + (f" t={ts[i]}" if ts[i] is not None else "")) for i in range(steps)]
    if view is View.temporal:
        unfused = result.unfused if result.unfused is not None else frame
        if status.fusion is None or status.fusion is FusionMode.off:  # two equal panels would need a word why
            return [(unfused, "unfused"), (frame, "fusion off (F): the same frame")]
        return [(unfused, "unfused"), (frame, "fused: " + status.fusion.label)]
    if result.real is None:
        return [(frame, "(next frame)"), (frame, "model")]
    return [(result.real, "real game"), (frame, "model")]
