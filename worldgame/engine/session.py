"""Recorded play sessions (R key or ``play record=true``) and exact regeneration of model sessions.

A session is a ``.wgep`` episode file (worldgame/data/episode.py) in ``sessions/``. Row i holds the
frame shown, the action that produced it, reward/done (real game), and per-frame columns written
as ``t_<name>``:

* timings in ms: ``input``, ``game`` or ``denoise``/``fusion``/``decode``, ``present``, ``latency``;
* model sessions also: ``lcm_steps`` (LCM steps used for the row), ``fusion_mode`` (0 off,
  1 latent, 2 pixel), and for every session ``event`` (0 step, 1 reset, 2 re-sync then step,
  3 the frame shown when recording started).

The metadata adds engine, seed, the play config, the checkpoint path and id, device, dtype, and
for model sessions ``snapshot``: the engine's full state when recording started (context latents,
actions, sampler generator, fusion history, the real game's seed and actions), as a base64 npz.
With it, :func:`regenerate` re-runs the model on the recorded actions and settings and compares
frames; resets within the session use seed ``seed + reset_index + n`` for the n-th reset.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from worldgame.data.episode import (  # the event codes are read from here too (tests, tools)
    EVENT_RESET,  # noqa: F401
    EVENT_RESYNC,  # noqa: F401
    EVENT_START,
    EVENT_STEP,
    SUFFIX,
    Episode,
    EpisodeWriter,
    read_episode,
)
from worldgame.engine.engines import Driver, Engine
from worldgame.engine.factory import checkpoint_id, configure_threads, load_model, model_engine
from worldgame.engine.keys import COLUMNS
from worldgame.engine.session_checks import SessionFacts, check_against_model, check_session, read_snapshot
from worldgame.errors import WorldgameError

PER_FRAME = {
    "event": "0 step, 1 reset, 2 re-sync to the real game then step, 3 first frame of the recording",
    **{c.name: c.doc for c in COLUMNS},  # the settings, from the table of live controls (keys.py)
    "latency": "ms from the action being read to its frame being presented",
}


def encode_state(state: dict[str, Any]) -> str:
    """An engine state (numpy arrays and scalars) as base64 of an npz, for JSON metadata."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in state.items()})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_state(text: str) -> dict[str, Any]:
    """Inverse of :func:`encode_state` (0-d arrays come back as Python scalars), for a state this
    program wrote; a session's snapshot is read by session_checks.read_snapshot, bounded and checked."""
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as npz:
        return {k: (npz[k].item() if npz[k].ndim == 0 else npz[k]) for k in npz.files}


class SessionRecorder:
    """Writes the frames a play window shows into a session file, one recording at a time.

    Args:
        directory: where session files go (created on first use).
        metadata: facts shared by every recording of this play run (game, config, checkpoint...).
    """

    def __init__(self, directory: str | Path, metadata: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.metadata = metadata
        self.writer: EpisodeWriter | None = None
        self.path: Path | None = None

    @property
    def active(self) -> bool:
        return self.writer is not None

    def start(self, engine: Engine, frame: np.ndarray, action: int, seed: int, reset_index: int) -> Path:
        """Open a new session whose first row is ``frame`` (shown now) and snapshot the engine.

        Args:
            engine: the engine as it is right after producing ``frame``.
            frame: the frame on screen.
            action: the action that produced it.
            seed: the play run's seed; reset n of this recording uses ``seed + reset_index + n``.
            reset_index: resets done before this recording started.
        """
        self.stop()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.directory / f"{engine.kind}_{stamp}{SUFFIX}"
        n = 1
        while path.exists():
            n += 1
            path = self.directory / f"{engine.kind}_{stamp}_{n}{SUFFIX}"
        meta = {
            **self.metadata,
            "engine": engine.kind,
            "seed": seed,
            "reset_index": reset_index,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "per_frame": PER_FRAME,
        }
        state = engine.state()
        if state is not None:
            meta["snapshot"] = encode_state(state)
        extra = engine.status().columns
        self.writer = EpisodeWriter(path, meta)
        self.path = path
        self.writer.add(np.array(frame, np.uint8), action, timings_ms={**extra, "event": EVENT_START})
        return path

    def add(
        self,
        frame: np.ndarray,
        action: int,
        reward: float,
        done: bool,
        columns: dict[str, float],
        event: int = EVENT_STEP,
    ) -> None:
        """Append one row (the frame is copied: engines reuse their buffers)."""
        if self.writer is not None:
            self.writer.add(np.array(frame, np.uint8), action, reward, done, {**columns, "event": event})

    def stop(self) -> Path | None:
        """Close the recording (if any) and return its path."""
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        return self.path


def regenerate(path: str | Path, device: str = "auto", progress: bool = False,
               announce: Callable[[str, int], None] | None = None, max_steps: int | None = None) -> dict:
    """Re-run the model of a recorded model session on its actions and settings; compare frames.

    Returns ``{'frames', 'identical', 'psnr', 'max_abs_diff'}``: ``frames`` counts the session's
    rows (row 0 is the state the recording started from, restored from the snapshot; every later
    row is regenerated and compared); ``identical``
    is True when every regenerated frame equals the recorded one bit for bit (expected on the
    device and dtype that recorded it), and then ``psnr`` is ``inf``; ``max_abs_diff`` is the
    largest per-pixel difference. Also ``checkpoint_changed`` when the weights' id differs.
    ``progress`` shows a progress bar on a terminal (each frame is a full model step).
    ``announce`` is told the checkpoint folder (resolved) and the work (network steps: the rows'
    sampling steps summed) before it loads, which takes seconds; a session asking more than
    ``max_steps`` is refused before anything loads.

    The session is a file from anywhere: everything taken from it is checked first
    (session_checks.py), the checkpoint it names is loaded by the one checkpoint loader.
    """
    path = Path(path)
    episode = read_episode(path)
    facts, snapshot = check_session(path, episode)  # before torch and the model load: bad sessions fail at once
    work = int(np.asarray(episode.timings_ms["lcm_steps"][1:], dtype=np.int64).sum())  # checked whole 1..1000
    if max_steps is not None and work > max_steps:
        raise WorldgameError(f"{path}: regenerating asks {work:,} network steps ({len(episode) - 1:,} frames at up to "
                             f"{int(np.max(episode.timings_ms['lcm_steps'][1:], initial=0))} steps each), more than "
                             f"max_steps={max_steps:,}; pass max_steps={work} to run it anyway")
    if announce is not None:
        announce(facts.checkpoint, work)
    import torch

    from worldgame.models.world_model import pick_device

    dev = pick_device(device)
    same_kind = facts.device.split(":")[0] == dev.type
    settings = {
        "fusion_window": facts.fusion_window,
        "fusion_base": facts.fusion_base,
        "optimize": facts.optimized,
        # ONNX runs on the CPU only (elsewhere: torch, compared by PSNR)
        "backend": str(facts.backend) if dev.type == "cpu" else "torch",
        "precision": str(facts.precision) if dev.type == "cpu" and facts.precision in ("fp32", "int8") else None,
        # the thread count the session ran with: CPU kernels may round differently with another
        "threads": facts.threads if same_kind else 0,
    }
    threads = torch.get_num_threads()
    try:
        model = load_model(facts.checkpoint, str(dev), (facts.dtype == "float16") if same_kind else None,
                           teacher=facts.sampler == "teacher")
        check_against_model(path, episode, model)
        state = read_snapshot(path, snapshot, model, facts)  # checked against the model before it is restored
        engine = model_engine(model, facts.seed, (str(facts.sampler), facts.spacing and str(facts.spacing)), **settings)
        return _regenerate(episode, engine, state, facts, progress)
    finally:
        configure_threads(threads, dev)  # as the caller had it


def _regenerate(episode: Episode, engine: Any, state: dict[str, Any], facts: SessionFacts, progress: bool = False) -> dict:
    """Restore the snapshot, then tick the engine through the play loop's own :class:`Driver` on
    each recorded row's event, action and settings; compare every frame with the recorded one."""
    from tqdm import tqdm

    meta = episode.metadata
    engine.load_state(state)
    driver = Driver(engine, facts.seed, resets=facts.reset_index)
    cols = episode.timings_ms
    events = cols.get("event", np.zeros(len(episode)))
    sq_err, max_diff, identical, same_events = 0.0, 0, True, True
    # each recorded setting's engine setter (the table's columns, keys.COLUMNS; checked: session_checks),
    # called with the row's value before it ticks; the chance column forces the recorded draw
    setters = [(c, cols[c.name], getattr(engine, c.setter)) for c in COLUMNS if c.name in cols]
    for i in tqdm(range(1, len(episode)), desc="regenerate", unit="frame", disable=None if progress else True):
        for column, values, setter in setters:
            if not (column.nan == "skip" and np.isnan(values[i])):
                setter(int(values[i]) if column.whole else float(values[i]))
        ticked = driver.tick(int(events[i]), int(episode.actions[i]))
        # the dream's predicted events (its score and game over) come back with its frames
        same_events = same_events and bool(ticked.reward == episode.rewards[i] and ticked.done == episode.dones[i])
        frame = ticked.frame
        diff = np.abs(frame.astype(np.int16) - episode.frames[i].astype(np.int16))
        max_diff = max(max_diff, int(diff.max()))
        identical = identical and max_diff == 0
        sq_err += float((diff.astype(np.float64) ** 2).mean())
    mse = sq_err / max(len(episode) - 1, 1)
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    result: dict[str, Any] = {"frames": len(episode), "identical": identical and same_events, "psnr": psnr,
                              "max_abs_diff": max_diff, "events_identical": same_events}
    if meta.get("checkpoint_id") and meta["checkpoint_id"] != checkpoint_id(facts.checkpoint):
        result["checkpoint_changed"] = True
    if engine.backend != facts.backend:
        result["backend_changed"] = True
    return result
