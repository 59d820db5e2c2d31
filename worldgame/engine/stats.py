"""Frame statistics: a rolling window for the HUD and whole-run totals for summaries and bench.

Stage names follow the source pipeline: input (keys, bookkeeping), denoise (LCM sampling),
fusion (φ-decay), decode (VAE), interpolate (TSR's in-between frames, when on), present (scale +
blit + HUD + flip); the real engine has ``game`` in place of the model stages. Latency runs from
the moment the action is read to the moment its frame is presented. Both classes preallocate
everything: nothing grows with play time.
"""

from __future__ import annotations

import numpy as np

STAGES = ("input", "agent", "game", "chance", "denoise", "fusion", "decode", "events", "interpolate", "present")


class FrameStats:
    """Fixed-size rolling window of per-frame timings (nothing grows with play time).

    Args:
        window: frames the averages and the p95 run over.
    """

    def __init__(self, window: int = 60) -> None:
        self.window = window
        self._stages = np.zeros((window, len(STAGES)))
        self._seen = np.zeros(len(STAGES), bool)
        self._latency = np.zeros(window)
        self._interval = np.zeros(window)
        self._n = self._i = 0
        self._ni = self._ii = 0

    def clear(self) -> None:
        """Forget everything (e.g. after a steps change, so the numbers describe the new setting)."""
        self._seen[:] = False
        self._n = self._i = self._ni = self._ii = 0

    def add(self, stages_ms: dict[str, float], latency_ms: float, interval_ms: float | None) -> None:
        """Record one presented frame; ``interval_ms`` is the time since the previous one (None
        after a pause)."""
        row = self._stages[self._i]
        row[:] = 0.0
        for name, ms in stages_ms.items():
            if name in STAGES:
                j = STAGES.index(name)
                row[j] = ms
                self._seen[j] = True
        self._latency[self._i] = latency_ms
        self._i = (self._i + 1) % self.window
        self._n = min(self._n + 1, self.window)
        if interval_ms is not None:
            self._interval[self._ii] = interval_ms
            self._ii = (self._ii + 1) % self.window
            self._ni = min(self._ni + 1, self.window)

    @property
    def frames(self) -> int:
        """Frames in the window."""
        return self._n

    def fps(self) -> float:
        """Presented frames per second over the window (0 before two frames)."""
        return 1000.0 / float(self._interval[: self._ni].mean()) if self._ni else 0.0

    def frame_ms(self) -> float:
        """Mean work per frame (input to presented), without the pacing wait."""
        return float(self._latency[: self._n].mean()) if self._n else 0.0

    def p95_latency(self) -> float:
        """95th percentile of key-read → frame-presented latency over the window."""
        return float(np.percentile(self._latency[: self._n], 95)) if self._n else 0.0

    def stage_means(self) -> dict[str, float]:
        """Mean milliseconds per stage that appeared in the window."""
        if not self._n:
            return {}
        means = self._stages[: self._n].mean(axis=0)
        return {name: float(means[j]) for j, name in enumerate(STAGES) if self._seen[j]}


class RunStats:
    """Totals over a whole run: frame count, stage sums and a latency histogram (0.05 ms bins
    up to 2 s), so percentiles come without keeping every frame.
    """

    BIN_MS = 0.05
    BINS = 40_000

    def __init__(self) -> None:
        self._hist = np.zeros(self.BINS, np.int64)
        self._sums = np.zeros(len(STAGES))
        self._seen = np.zeros(len(STAGES), bool)
        self.frames = 0
        self.first: float | None = None  # perf_counter when the first frame was presented
        self.last: float | None = None

    def add(self, stages_ms: dict[str, float], latency_ms: float, presented_at: float) -> None:
        """Record one presented frame."""
        for name, ms in stages_ms.items():
            if name in STAGES:
                j = STAGES.index(name)
                self._sums[j] += ms
                self._seen[j] = True
        self._hist[min(int(latency_ms / self.BIN_MS), self.BINS - 1)] += 1
        self.frames += 1
        if self.first is None:
            self.first = presented_at
        self.last = presented_at

    def fps(self) -> float:
        """Frames per second from the first to the last presented frame."""
        if self.frames < 2 or self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.frames - 1) / (self.last - self.first)

    def latency_percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of latency in ms, to the histogram's resolution."""
        if not self.frames:
            return 0.0
        k = int(np.searchsorted(np.cumsum(self._hist), q / 100 * self.frames))
        return (min(k, self.BINS - 1) + 0.5) * self.BIN_MS

    def stage_means(self) -> dict[str, float]:
        """Mean milliseconds per stage seen."""
        n = max(self.frames, 1)
        return {name: float(self._sums[j] / n) for j, name in enumerate(STAGES) if self._seen[j]}
