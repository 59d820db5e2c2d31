"""Episodes on disk: one format for collected data, recorded play and model sessions.

A ``.wgep`` file is a magic line followed by records. Each record is
``kind (4 bytes) | payload length (uint32 LE) | crc32 of payload (uint32 LE) | payload``:

* ``META`` (first record): JSON metadata -- game, seed, frame_size, action_names, policy
  ("human", "random", "scripted", or "model" for a model session), and for model sessions the
  checkpoint and config.
* ``CHNK``: a zlib-compressed ``.npz`` holding the next rows of ``frames`` (N,H,W,3 uint8),
  ``actions`` (N, int16), ``rewards`` (N, float32), ``dones`` (N, bool) and any per-frame timings
  ``t_<name>`` (N, float32, milliseconds).
* ``END `` (last record, only after a clean close): JSON summary, merged into the metadata.

Row i holds frame i and the action that produced it from frame i-1 (row 0, a reset frame, holds
action 0), with that transition's reward; ``dones[i]`` marks the last frame of a game episode.
The writer appends a chunk at least once per ``flush_seconds`` and fsyncs it, so a crash
(even ``kill -9``) loses at most that much; the reader returns every complete chunk of such a file
and reports it as unfinished, and names the file and the problem for anything else.
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldgame.errors import WorldgameError

MAGIC = b"WGEP1\n"
SUFFIX = ".wgep"
_HEADER = struct.Struct("<4sII")


class EpisodeWriter:
    """Appends frames to a ``.wgep`` file, crash-safely.

    Args:
        path: file to create (parent folders are made; an existing file is never overwritten).
        metadata: JSON-serialisable facts about the episode (game, seed, frame_size, ...).
        flush_seconds: longest time rows wait in memory before they are written and fsynced.
        flush_rows: also flush when this many rows are waiting (bounds memory for fast writers).
    """

    def __init__(
        self, path: str | Path, metadata: dict[str, Any], flush_seconds: float = 1.0, flush_rows: int = 512
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise WorldgameError(f"{self.path} already exists; choose another name (nothing was overwritten)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorldgameError(f"cannot create folder {self.path.parent} ({e.strerror}); choose another out=") from e
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.rows = 0
        self._pending: dict[str, list[Any]] = {}
        self._last_flush = time.monotonic()
        self._file = open(self.path, "xb")  # noqa: SIM115 -- stays open across add() calls; close() ends it
        self._file.write(MAGIC)
        self._record(b"META", json.dumps(metadata).encode())
        self._sync()

    def add(
        self,
        frame: np.ndarray,
        action: int,
        reward: float = 0.0,
        done: bool = False,
        timings_ms: dict[str, float] | None = None,
    ) -> None:
        """Append one row; flushes when a second has passed or ``flush_rows`` are waiting."""
        p = self._pending
        p.setdefault("frames", []).append(np.asarray(frame, np.uint8))
        p.setdefault("actions", []).append(action)
        p.setdefault("rewards", []).append(reward)
        p.setdefault("dones", []).append(done)
        for name, ms in (timings_ms or {}).items():
            p.setdefault(f"t_{name}", []).append(ms)
        self.rows += 1
        if len(p["frames"]) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write waiting rows as one chunk and fsync it."""
        self._last_flush = time.monotonic()
        if not self._pending.get("frames"):
            return
        p = self._pending
        arrays = {
            "frames": np.stack(p.pop("frames")),
            "actions": np.asarray(p.pop("actions"), np.int16),
            "rewards": np.asarray(p.pop("rewards"), np.float32),
            "dones": np.asarray(p.pop("dones"), bool),
        }
        arrays.update({k: np.asarray(v, np.float32) for k, v in p.items()})
        p.clear()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._record(b"CHNK", zlib.compress(buf.getvalue(), 1))
        self._sync()

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Flush, write the END record (summary merged into the metadata on read) and close."""
        if self._file.closed:
            return
        self.flush()
        self._record(b"END ", json.dumps({"rows": self.rows, **(summary or {})}).encode())
        self._sync()
        self._file.close()

    def __enter__(self) -> EpisodeWriter:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, kind: bytes, payload: bytes) -> None:
        self._file.write(_HEADER.pack(kind, len(payload), zlib.crc32(payload)) + payload)

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())


@dataclass
class Episode:
    """An episode read back from disk (see the module docstring for what each row means)."""

    path: Path
    metadata: dict[str, Any]
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    timings_ms: dict[str, np.ndarray] = field(default_factory=dict)
    complete: bool = True

    def __len__(self) -> int:
        return len(self.frames)


def read_episode(path: str | Path) -> Episode:
    """Read and validate a ``.wgep`` file.

    A file cut short by a crash gives back every complete chunk with ``complete=False`` (and a
    warning); a missing, foreign or corrupted file raises WorldgameError naming it and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise WorldgameError(f"{path}: no such episode file (check the path)")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise WorldgameError(f"{path}: not a worldgame episode (bad magic); was it written by worldgame?")
    pos, metadata, chunks, end, truncated = len(MAGIC), None, [], None, False
    while pos < len(data):
        if pos + _HEADER.size > len(data):
            truncated = True
            break
        kind, length, crc = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(payload) < length:
            truncated = True
            break
        if zlib.crc32(payload) != crc:
            raise WorldgameError(f"{path}: damaged {kind.decode(errors='replace')!r} record at byte {pos} (checksum mismatch)")
        pos += _HEADER.size + length
        if kind == b"META":
            metadata = json.loads(payload)
        elif kind == b"CHNK":
            with np.load(io.BytesIO(zlib.decompress(payload)), allow_pickle=False) as npz:
                chunks.append({k: npz[k] for k in npz.files})
        elif kind == b"END ":
            end = json.loads(payload)
        else:
            raise WorldgameError(f"{path}: unknown record {kind!r} at byte {pos}; the file is damaged")
    if metadata is None:
        raise WorldgameError(f"{path}: no metadata record; the file is empty or damaged")
    if not chunks:
        raise WorldgameError(f"{path}: holds no frames (the writer stopped before its first flush)")
    complete = end is not None and not truncated
    if not complete:
        warnings.warn(f"{path}: unfinished (crash or kill?); read the {sum(len(c['frames']) for c in chunks)} frames flushed", stacklevel=2)
    merged = {k: np.concatenate([c[k] for c in chunks if k in c]) for k in chunks[0]}
    metadata = {**metadata, **(end or {})}
    return Episode(
        path=path,
        metadata=metadata,
        frames=merged.pop("frames"),
        actions=merged.pop("actions").astype(np.int64),
        rewards=merged.pop("rewards"),
        dones=merged.pop("dones"),
        timings_ms={k[2:]: v for k, v in merged.items() if k.startswith("t_")},
        complete=complete,
    )


def list_episodes(path: str | Path) -> list[Path]:
    """The ``.wgep`` files at ``path`` (a file, or a folder searched recursively), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WorldgameError(f"{path}: no such file or folder")
    files = sorted(path.rglob(f"*{SUFFIX}"))
    if not files:
        raise WorldgameError(f"{path}: no {SUFFIX} episodes in this folder; run `worldgame collect out={path}` first")
    return files
