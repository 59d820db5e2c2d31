"""φ-decay temporal fusion: the display path's smoothing of the predicted stream.

    y_t = Σ_{i=0..N} b^{-i} x_{t-i} / Σ_{i=0..N} b^{-i}        (b = φ ≈ 1.618 by default)

i = 0 is the newest frame. Until N + 1 frames have been seen the sum runs over the frames there
are (and is normalised over them), so the first fused frame is the first frame itself.

The fusion only ever changes what is shown: callers hand it a copy of their frame or latent and
must never feed its output back into the world model's context (the Dream keeps the two apart).
Works on any fixed-shape torch tensor: latents (``latent`` mode, as in the source pipeline) or
decoded frames as float (``pixel`` mode). Buffers are allocated once, on the first frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from worldgame.vocabulary import PHI, FusionMode  # the shared words: the decay base and the modes

__all__ = ["PHI", "Fusion", "FusionMode", "TemporalFusion", "decay_weights", "show"]


def decay_weights(window: int, base: float = PHI, available: int | None = None) -> list[float]:
    """Normalised weights ``w_i ∝ base^{-i}`` for i = 0 (newest) .. min(window, available - 1)."""
    if window < 0:
        raise ValueError(f"fusion window must be >= 0, got {window}")
    if base <= 0:
        raise ValueError(f"fusion base must be > 0, got {base}")
    n = window + 1 if available is None else max(1, min(window + 1, available))
    raw = [base ** (-i) for i in range(n)]
    total = sum(raw)
    return [w / total for w in raw]


class TemporalFusion:
    """A ring of the last ``window + 1`` inputs and their φ-decay weighted mean.

    Args:
        window: N, how many past frames join the current one (0 = identity).
        base: decay base b; the weight of the frame i steps back is b^{-i} before normalising.
    """

    def __init__(self, window: int = 4, base: float = PHI) -> None:
        decay_weights(window, base)  # validates
        self.window = window
        self.base = base
        self._ring: torch.Tensor | None = None
        self._out: torch.Tensor | None = None
        self._head = -1  # slot of the newest input
        self._count = 0  # inputs seen since reset (capped at window + 1)
        self._weights = [decay_weights(window, base, k) for k in range(1, window + 2)]

    @property
    def weights(self) -> list[float]:
        """The weights the last output used, newest first (all N + 1 once the ring is full)."""
        return self._weights[max(self._count, 1) - 1]

    @property
    def count(self) -> int:
        """How many inputs the ring holds (0 after reset, at most window + 1)."""
        return self._count

    def reset(self) -> None:
        """Forget the history (a reset, a re-sync or a mode switch); buffers are kept."""
        self._head, self._count = -1, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Push ``x`` and return the fused tensor.

        The result lives in a buffer this object reuses: it is valid until the next call and must
        not be written to. ``x`` itself is copied, never modified.
        """
        size = self.window + 1
        if self._ring is None or self._ring.shape[1:] != x.shape or self._ring.dtype != x.dtype or self._ring.device != x.device:
            self._ring = torch.empty((size, *x.shape), dtype=x.dtype, device=x.device)
            self._out = torch.empty_like(x)
            self.reset()
        self._head = (self._head + 1) % size
        self._ring[self._head].copy_(x)
        self._count = min(self._count + 1, size)
        out = self._out
        assert out is not None
        weights = self._weights[self._count - 1]
        out.copy_(self._ring[self._head]).mul_(weights[0])
        for i in range(1, self._count):
            out.add_(self._ring[(self._head - i) % size], alpha=weights[i])
        return out

    def state(self) -> dict[str, torch.Tensor | int]:
        """Everything needed to continue the same stream elsewhere (sessions snapshot it)."""
        ring = self._ring if self._ring is not None else torch.empty(0)
        return {"ring": ring.detach().cpu().clone(), "head": self._head, "count": self._count}

    def load_state(self, state: dict[str, torch.Tensor | int], device: torch.device | str, dtype: torch.dtype) -> None:
        """Restore what :meth:`state` returned."""
        ring = state["ring"]
        assert isinstance(ring, torch.Tensor)
        if ring.numel() == 0:
            self._ring, self._out = None, None
            self.reset()
            return
        self._ring = ring.to(device=device, dtype=dtype).clone()
        self._out = torch.empty_like(self._ring[0])
        self._head, self._count = int(state["head"]), int(state["count"])


class Fusion:
    """The display fusion of one shown stream (B dreams side by side): its mode and φ-decay history.

    Args:
        mode: off, latent or pixel (:class:`FusionMode`).
        window, base: the φ-decay fusion's N and decay base.
    """

    def __init__(self, mode: str | int | FusionMode = FusionMode.off, window: int = 4, base: float = PHI) -> None:
        self.mode = FusionMode.parse(mode)
        self.temporal = TemporalFusion(window, base)
        self._pixels: tuple[torch.Tensor, ...] | None = None  # pixel mode's float in/out and uint8 buffers

    def set_mode(self, mode: str | int | FusionMode) -> None:
        """Switch mode; the history starts afresh (latents and pixels don't mix)."""
        if FusionMode.parse(mode) is not self.mode:
            self.mode = FusionMode.parse(mode)
            self.temporal.reset()

    def reset(self) -> None:
        """Forget the history (a reset or a re-sync)."""
        self.temporal.reset()

    def _pixel_buffers(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._pixels is None or self._pixels[2].shape != frames.shape or self._pixels[2].device != frames.device:
            self._pixels = (torch.empty(frames.shape, device=frames.device), torch.empty(frames.shape, device=frames.device),
                            torch.empty_like(frames))
        return self._pixels


def show(latent: torch.Tensor, fusion: Fusion | None, decode: Callable[[torch.Tensor], torch.Tensor],
         stages: dict[str, float] | None = None) -> torch.Tensor:
    """THE frames a display shows for the predicted latents (B, C, h, w): uint8 (B, H, W, 3) on the
    latents' device, through ``fusion`` (None or mode off: the model's own frames). Play, eval and
    training validation all show frames through this, so eval measures what play shows.

    Latent mode fuses the latents and decodes the fused ones; pixel mode fuses the decoded frames as
    float and rounds. ``decode``: latents -> uint8 frames (a prepared sampler's, or
    ``world_model.to_frames`` of a bare VAE). The result may be a buffer the next call reuses.
    ``stages``: gets the milliseconds spent in ``fusion`` and ``decode``."""
    mode = fusion.mode if fusion is not None else FusionMode.off
    fuse_ms, t0 = 0.0, time.perf_counter()
    if mode is FusionMode.latent:
        latent = fusion.temporal(latent)
        fuse_ms, t0 = _ms_since(t0, latent), time.perf_counter()
    frames = decode(latent)
    decode_ms = _ms_since(t0, frames) if stages is not None else 0.0
    if mode is FusionMode.pixel:
        t0 = time.perf_counter()
        fused_in, rounded, out = fusion._pixel_buffers(frames)
        fused_in.copy_(frames)
        torch.round(fusion.temporal(fused_in), out=rounded)
        frames = out.copy_(rounded)
        fuse_ms = _ms_since(t0, frames) if stages is not None else 0.0
    if stages is not None:
        stages["fusion"], stages["decode"] = fuse_ms, decode_ms
    return frames


def _ms_since(t0: float, result: torch.Tensor) -> float:
    if result.device.type == "cuda":  # CUDA runs ahead of the host: a stage's time must wait for it
        torch.cuda.synchronize(result.device)
    return (time.perf_counter() - t0) * 1000
