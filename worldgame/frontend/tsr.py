"""Temporal super-resolution (TSR): frames shown between two model frames, so the window presents
``display_hz`` frames a second while the model ticks at ``fps``.

With ``n = display_hz / fps`` (a whole number, 2 or more), each model tick shows n frames: the
in-between frames at ``alpha = 1/n .. (n-1)/n`` of the way from the previous model frame to the
new one, then the new frame itself. The in-between frames are made from the two frames as shown,
in pixel space, so they never touch the engine: the model's context, its sampler and recorded
sessions see only model frames, and any engine (the real game too) can be shown this way.

Two ways to make a frame between ``a`` and ``b``:

* ``warp`` (default): motion-compensated. For every output pixel, the motion ``v`` (up to
  ``radius`` px each way) whose two ends agree best — ``a`` at ``p - alpha*v`` against ``b`` at
  ``p + (1-alpha)*v``, luma differences summed over a small window, plus a small penalty per pixel
  of motion so that flat or unchanged areas keep ``v = 0`` — then ``(1-alpha)*a(...) + alpha*b(...)``
  at those ends. A moving object shows once, part of the way along (video codecs search motion on
  luma the same way). Where nothing can be followed (an object appearing or vanishing) the pixels
  blend in place or keep the background, so such an object fades in or out, smaller for that frame.
* ``blend``: ``(1-alpha)*a + alpha*b``; no motion search, every pixel within the range of its two
  model frames, but a moving object shows twice, half-transparent (ghosting).

Measured with ``python tools/tsr_measure.py`` (the midpoint of every pair of frames of a
400-frame dream of the shipped Bouncer checkpoint, 1 thread): of the pixels that change between
two frames, the share the midpoint shows half-way between both (ghosting) is 100 % for the blend,
95 % for a latent interpolation (decode the lerp of the two latents) and 1 % for the warp; pixels
a frame outside the colour range of both frames (content in neither: artifacts, flicker) 0, 15
and 1; cost 0.02, 0.40 (a decoder call on ONNX Runtime) and 1.3 ms. The latent midpoint ghosts
like the blend, adds artifacts, costs a decode and needs the engine's latents, so it is not
offered. On Atari Boxing (``checkpoints/boxing``, 300 frames) the warp ghosts on 21 % (blend 100 %,
latent 96 %) with ~5 artifact pixels a frame on the dream (15 on the real game's own frames).

Latency: a frame is fully shown only after the frames leading up to it, ``(n-1)/n`` of a tick
later than without TSR (16.7 ms at 30 -> 60 Hz) plus the cost of making an in-between frame; the
first in-between frame (already part of the way to the new one) is shown when the model frame
would have been, plus that cost. Keys are read once per model tick.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from worldgame.settings import frames_per_tick  # noqa: F401 -- the display_hz relation, checked with the settings
from worldgame.vocabulary import Interpolation  # the display_interp= setting's words

INTERPOLATIONS = tuple(Interpolation)
LUMA = np.array([77, 150, 29], np.int32)  # BT.601 weights / 256: the motion search runs on luma


class Interpolator:
    """Frames between two frames (see the module docstring); allocates only when the frame size changes.

    Args:
        mode: ``warp`` or ``blend``.
        radius: the largest motion searched, in pixels each way (warp).
        window: side of the square the luma differences are summed over (warp).
        bias: penalty per pixel of motion, in luma levels per window pixel (warp): keeps flat and
            unchanged areas still.
    """

    def __init__(self, mode: str = "warp", radius: int = 4, window: int = 3, bias: int = 2) -> None:
        if mode not in INTERPOLATIONS:
            raise ValueError(f"interpolation {mode!r}: choose one of {', '.join(INTERPOLATIONS)}")
        self.mode, self.radius, self.window = mode, int(radius), int(window)
        r = self.radius
        self._motions = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
        self._penalty = (bias * window * window * np.abs(self._motions).sum(1)).astype(np.int32)[:, None, None]
        self._pad = r + window // 2  # frames are padded (edge pixels repeated) by the search and the window
        self._ends: dict[float, np.ndarray] = {}
        self._shape: tuple[int, ...] = ()

    def start(self, a: np.ndarray, b: np.ndarray) -> None:
        """Interpolate from ``a`` (shown before) to ``b`` (the new frame) next; both are copied."""
        if a.shape != self._shape:
            self._allocate(a.shape)
        if self.mode == "blend":
            np.copyto(self._a, a)
            np.copyto(self._b, b)
            return
        p = self._pad
        for src, dst, luma in ((a, self._a, self._luma_a), (b, self._b, self._luma_b)):
            dst[p:-p, p:-p] = src
            _fill_border(dst, p)
            np.right_shift(dst @ LUMA, 8, out=luma)

    def frame(self, alpha: float) -> np.ndarray:
        """The frame ``alpha`` (0..1) of the way from ``a`` to ``b``: a buffer reused by the next call."""
        t = float(alpha)
        if self.mode == "blend":
            np.multiply(self._a, 1.0 - t, out=self._mix_a)
            np.multiply(self._b, t, out=self._mix_b)
        else:
            self._warp(t)
        self._mix_a += self._mix_b
        np.rint(self._mix_a, out=self._mix_a)
        np.copyto(self._out, self._mix_a, casting="unsafe")
        return self._out

    # --- the motion-compensated frame ----------------------------------------------------------
    def _warp(self, t: float) -> None:
        h, w = self._shape[:2]
        k, r, q = self.window, self.radius, self._pad - self.radius
        ends = self._ends.get(t)
        if ends is None:  # per motion: where a and b are read, relative to the padded frame's corner
            back = np.rint(t * self._motions).astype(int)
            ends = self._ends[t] = np.concatenate([r - back, r + self._motions - back], 1)
        # the luma difference of the two ends of every motion, for every pixel of the window-padded grid
        wa = sliding_window_view(self._luma_a, (h + k - 1, w + k - 1))
        wb = sliding_window_view(self._luma_b, (h + k - 1, w + k - 1))
        cost = self._cost
        np.subtract(wa[ends[:, 0], ends[:, 1]], wb[ends[:, 2], ends[:, 3]], out=cost)
        np.abs(cost, out=cost)
        rows, total = self._rows, self._total  # summed over the k x k window: k rows, then k columns
        np.add(cost[:, 0:h], cost[:, 1 : h + 1], out=rows)
        for i in range(2, k):
            rows += cost[:, i : i + h]
        np.add(rows[:, :, 0:w], rows[:, :, 1 : w + 1], out=total)
        for i in range(2, k):
            total += rows[:, :, i : i + w]
        total += self._penalty
        best = ends[total.argmin(0)]  # (h, w, 4): the chosen motion's ends for every pixel
        np.multiply(self._a[self._ys + q + best[..., 0], self._xs + q + best[..., 1]], 1.0 - t, out=self._mix_a)
        np.multiply(self._b[self._ys + q + best[..., 2], self._xs + q + best[..., 3]], t, out=self._mix_b)

    def _allocate(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        self._shape = tuple(shape)
        self._out = np.empty(shape, np.uint8)
        self._mix_a, self._mix_b = np.empty(shape, np.float32), np.empty(shape, np.float32)
        if self.mode == "blend":
            self._a, self._b = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
            return
        p, k, m = self._pad, self.window, len(self._motions)
        self._a = np.empty((h + 2 * p, w + 2 * p, shape[2]), np.uint8)
        self._b = np.empty_like(self._a)
        self._luma_a, self._luma_b = np.empty((h + 2 * p, w + 2 * p), np.int16), np.empty((h + 2 * p, w + 2 * p), np.int16)
        self._cost = np.empty((m, h + k - 1, w + k - 1), np.int16)
        self._rows = np.empty((m, h, w + k - 1), np.int32)
        self._total = np.empty((m, h, w), np.int32)
        self._ys, self._xs = np.mgrid[:h, :w]


def _fill_border(x: np.ndarray, p: int) -> None:
    """Repeat the edge pixels of ``x[p:-p, p:-p]`` into its ``p``-wide border, in place."""
    x[:p] = x[p]
    x[-p:] = x[-p - 1]
    x[:, :p] = x[:, p : p + 1]
    x[:, -p:] = x[:, -p - 1 : -p]
