"""Episodes on disk: one format for collected data, recorded play and model sessions.

A ``.wgep`` file is a magic line (``WGEP2``; ``WGEP1`` files are still read) followed by
records, each ``kind (4 bytes) | payload length (uint32 LE) | crc32 of payload (uint32 LE) |
crc32 of these 12 header bytes (uint32 LE, WGEP2 only) | payload`` (framing: records.py):

* ``META`` (first record): JSON metadata -- game, seed, frame_size, action_names, policy
  ("human", "random", "scripted", or "model" for a model session), and for model sessions the
  checkpoint and config.
* ``CHNK``: a zlib-compressed ``.npz`` holding the next rows of ``frames`` (N,H,W,3 uint8),
  ``actions`` (N, int16), ``rewards`` (N, float32), ``dones`` (N, bool) and any per-frame columns
  ``t_<name>`` (N, float32; NaN for a row that had none): timings in milliseconds, a session's
  ``event``, collected data's ``appeared`` (the game's chance put an object on the field) -- decoding: chunks.py.
* ``END `` (last record, only after a clean close): JSON summary, merged into the metadata.

Row i holds frame i and the action that produced it from frame i-1 (row 0, a reset frame, holds
action 0), with that transition's reward; ``dones[i]`` marks the last frame of a game episode.
The writer appends a chunk at least once per ``flush_seconds`` and fsyncs it, so a crash
(even ``kill -9``) loses at most that much; the reader returns every complete chunk of such a file
and reports it as unfinished, and names the file and the problem for anything else.

Files are data from anywhere, so reading is bounded: only a regular file is opened (never a FIFO
or a device), its magic line is read first, a file over ``MAX_EPISODE_BYTES`` is refused on its
size before it is read, a chunk may decompress to no more than
``MAX_CHUNK_ROWS`` rows of the META frame size, every array's shape and dtype is checked before it
is allocated, and a whole file may expand to at most ``MAX_EXPANSION`` times its size on disk
(zlib level 1, which the writer uses, stays below ~230x even for blank frames).
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldgame.data import chunks, records
from worldgame.data.chunks import MAX_CHUNK_ROWS, MAX_FRAME_SIZE, ChunkError, Limits
from worldgame.data.records import MAGIC, Damaged
from worldgame.errors import WorldgameError
from worldgame.fileio import check_regular, open_regular

SUFFIX = ".wgep"
MAX_EXPANSION = 256
MAX_JSON_BYTES = 16 << 20
# The largest .wgep read (checked on its size before reading: the reader holds the whole file). A
# collected 1500-frame 64 px episode is ~1 MB and an hour of recorded 64 px play ~100 MB, so this is
# far above real files, yet refuses a sparse or runaway file before it costs memory or time.
MAX_EPISODE_BYTES = 1 << 30
EPISODE_HINT = "an episode must be a .wgep file written by worldgame (remove or replace it)"
# the t_event column of recorded sessions: 0 step, 1 reset, 2 re-sync then step, 3 recording start
EVENT_STEP, EVENT_RESET, EVENT_RESYNC, EVENT_START = 0, 1, 2, 3
MAX_ACTIONS = 1024
FROM_META_ONLY = ("game", "game_config", "frame_size", "action_names")  # END may not change these
FLUSH_BYTES = 32 << 20  # rows waiting in memory before a flush, whatever the frame size


class WriteFailed(WorldgameError):
    """The disk refused a write; ``reason`` says why, the message adds what was kept."""

    def __init__(self, reason: str, kept: str = "") -> None:
        super().__init__(reason + kept)
        self.reason = reason


class EpisodeWriter:
    """Appends frames to a ``.wgep`` file, crash-safely.

    Args:
        path: file to create (parent folders are made; an existing file is never overwritten).
        metadata: JSON-serialisable facts about the episode (game, seed, frame_size, ...).
        flush_seconds: longest time rows wait in memory before they are written and fsynced.
        flush_rows: also flush when this many rows are waiting (bounds memory for fast writers).

    A write that fails (full disk, unwritable folder) raises WorldgameError; the file is cut
    back to its last whole record, so what was written before stays readable, and a file that
    never got a frame is removed.
    """

    def __init__(
        self, path: str | Path, metadata: dict[str, Any], flush_seconds: float = 1.0, flush_rows: int = 512
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise WorldgameError(f"{self.path} already exists; choose another name (nothing was overwritten)")
        if not 1 <= flush_rows <= MAX_CHUNK_ROWS:
            raise ValueError(f"flush_rows must be 1..{MAX_CHUNK_ROWS} (readers refuse bigger chunks)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorldgameError(f"cannot create folder {self.path.parent} ({e.strerror or e}); choose another out=") from e
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.rows = 0
        self.written_rows = 0  # rows safely on disk
        self._pending: dict[str, list[Any]] = {}
        self._pending_rows = 0
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        try:
            self._file = open(self.path, "xb")  # noqa: SIM115 -- stays open across add() calls; close() ends it
        except OSError as e:
            raise WorldgameError(f"cannot write {self.path} ({e.strerror or e}); choose a writable folder") from e
        self._good = 0  # file length up to the last whole record
        self._write(MAGIC, sync=False)
        self._write(records.pack(b"META", json.dumps(metadata).encode()))

    def add(
        self,
        frame: np.ndarray,
        action: int,
        reward: float = 0.0,
        done: bool = False,
        timings_ms: dict[str, float] | None = None,
    ) -> None:
        """Append one row; flushes when a second has passed or ``flush_rows`` are waiting."""
        p, n = self._pending, self._pending_rows
        frame = np.asarray(frame, np.uint8)
        p.setdefault("frames", []).append(frame)
        p.setdefault("actions", []).append(action)
        p.setdefault("rewards", []).append(reward)
        p.setdefault("dones", []).append(done)
        timings = {f"t_{k}": v for k, v in (timings_ms or {}).items()}
        for key in timings.keys() - p.keys():  # a column new in this chunk: earlier rows had none
            p[key] = [math.nan] * n
        for key in p.keys() - {"frames", "actions", "rewards", "dones"}:
            p[key].append(timings.get(key, math.nan))  # every column stays row-aligned
        self.rows += 1
        self._pending_rows += 1
        self._pending_bytes += frame.nbytes
        if (
            self._pending_rows >= self.flush_rows
            or self._pending_bytes >= FLUSH_BYTES
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write waiting rows as one chunk and fsync it."""
        self._last_flush = time.monotonic()
        if not self._pending_rows:
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
        rows, self._pending_rows, self._pending_bytes = self._pending_rows, 0, 0
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._write(records.pack(b"CHNK", zlib.compress(buf.getvalue(), 1)))
        self.written_rows += rows

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Flush, write the END record (summary merged into the metadata on read) and close."""
        if self._file.closed:
            return
        self.flush()
        self._write(records.pack(b"END ", json.dumps({"rows": self.rows, **(summary or {})}).encode()))
        self._file.close()

    def abort(self) -> None:
        """Write what is waiting but no END record (the file reads as unfinished), and close."""
        if self._file.closed:
            return
        try:
            self.flush()
        except WorldgameError:
            return  # _fail closed the file and kept what was whole
        self._file.close()

    def __enter__(self) -> EpisodeWriter:  # noqa: PYI034
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, data: bytes, sync: bool = True) -> None:
        """Append whole records durably; on failure cut the file back to its last whole record."""
        try:
            self._file.write(data)
            if sync:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._good += len(data)
        except OSError as e:
            self._fail(e)

    def _fail(self, e: OSError) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # the buffered bytes that failed to write are dropped below anyway
        kept = ""
        try:
            if self.written_rows:
                os.truncate(self.path, self._good)  # shrinking needs no free space
                kept = f"; the {self.written_rows} frames written before are kept (the file reads as unfinished)"
            else:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        raise WriteFailed(f"cannot write {self.path} ({e.strerror or e}); free some disk space or choose a writable folder", kept) from e


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
    warning); a missing, foreign, damaged or oversized file raises WorldgameError naming it and
    the problem.
    """
    path = Path(path)
    data = _read_file(path)
    try:
        framing = records.split(data)
    except ValueError:
        raise WorldgameError(f"{path}: not a worldgame episode (bad magic); was it written by worldgame?") from None
    except Damaged as e:
        raise WorldgameError(f"{path}: {_line(e)}; the file is damaged") from None
    try:
        return _assemble(path, framing, budget=MAX_EXPANSION * len(data) + (1 << 20))
    except Damaged as e:
        raise WorldgameError(f"{path}: {_line(e)}; the file is damaged or was not written by worldgame") from None


def _read_file(path: Path) -> bytes:
    """The bytes of episode ``path``: only a regular file (a FIFO would block, a device never
    ends), its magic line read before anything else, and no more than MAX_EPISODE_BYTES."""
    with open_regular(path, f"episode {path}", EPISODE_HINT) as f:
        size = os.fstat(f.fileno()).st_size
        if records.version_of(f.read(len(MAGIC))) is None:
            raise WorldgameError(f"{path}: not a worldgame episode (bad magic); was it written by worldgame?")
        if size > MAX_EPISODE_BYTES:
            raise WorldgameError(f"{path}: {size >> 20} MiB, more than an episode may hold ({MAX_EPISODE_BYTES >> 20} MiB); "
                                 "remove it or move it out of the data folder")
        f.seek(0)
        # what fstat saw, no more: read(n) allocates n bytes up front, and a session still being
        # written reads as cut short (its complete chunks), as if the writer had crashed there
        return f.read(size)


def _line(e: Exception) -> str:
    return " ".join(str(e).split())


def _assemble(path: Path, framing: records.Framing, budget: int) -> Episode:
    metadata: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    chunk_list: list[dict[str, np.ndarray]] = []
    limits = Limits.for_frame_size(None)
    for rec in framing.records:
        if end is not None:
            raise Damaged(f"{rec.kind.decode()!r} record at byte {rec.offset} after the END record")
        if rec.kind == b"META":
            if metadata is not None:
                raise Damaged(f"second META record at byte {rec.offset}")
            metadata = _json(rec)
            limits = Limits.for_frame_size(_check_meta(metadata))
        elif metadata is None:
            raise Damaged(f"{rec.kind.decode()!r} record at byte {rec.offset} before the META record")
        elif rec.kind == b"CHNK":
            try:
                arrays, used = chunks.decode_chunk(rec.payload, limits, budget)
            except ChunkError as e:
                raise Damaged(f"chunk at byte {rec.offset} {e}") from None
            budget -= used
            chunk_list.append(_aligned(arrays, rec.offset, chunk_list))
        else:
            end = _json(rec)
    if metadata is None:
        raise WorldgameError(f"{path}: no metadata record; the file is empty or damaged")
    if not chunk_list:
        raise WorldgameError(f"{path}: holds no frames (the writer stopped before its first flush)")
    total = sum(len(c["frames"]) for c in chunk_list)
    if end is not None and "rows" in end and end["rows"] != total:
        raise Damaged(f"the END record counts {end['rows']} rows but the chunks hold {total}")
    complete = end is not None and not framing.truncated
    if not complete:
        warnings.warn(f"{path}: unfinished (crash or kill?); read the {total} frames flushed", stacklevel=3)
    merged = _concatenate(chunk_list)
    _check_actions(merged["actions"], metadata)
    return Episode(
        path=path,
        metadata={**metadata, **{k: v for k, v in (end or {}).items() if k not in FROM_META_ONLY}},
        frames=merged.pop("frames"),
        actions=merged.pop("actions").astype(np.int64),
        rewards=merged.pop("rewards").astype(np.float32, copy=False),
        dones=merged.pop("dones"),
        timings_ms={k[2:]: v.astype(np.float32, copy=False) for k, v in merged.items()},
        complete=complete,
    )


def _json(rec: records.Record) -> dict[str, Any]:
    name = rec.kind.decode().strip()
    if len(rec.payload) > MAX_JSON_BYTES:
        raise Damaged(f"{name} record at byte {rec.offset} is {len(rec.payload)} bytes, more than {MAX_JSON_BYTES >> 20} MiB")
    try:
        value = json.loads(rec.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Damaged(f"{name} record at byte {rec.offset} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise Damaged(f"{name} record at byte {rec.offset} is a JSON {type(value).__name__}, not an object")
    return value


def _check_meta(metadata: dict[str, Any]) -> int | None:
    """Check the META facts that size what the reader allocates; returns the frame size."""
    size = metadata.get("frame_size")
    if size is None:
        return None
    if type(size) is not int or not 1 <= size <= MAX_FRAME_SIZE:
        raise Damaged(f"META frame_size is {size!r}, not a whole number 1..{MAX_FRAME_SIZE}")
    names = metadata.get("action_names")
    if names is not None and (
        not isinstance(names, list) or not 0 < len(names) <= MAX_ACTIONS or not all(isinstance(n, str) for n in names)
    ):
        raise Damaged(f"META action_names is not a list of 1..{MAX_ACTIONS} names")
    return size


def _aligned(arrays: dict[str, np.ndarray], offset: int, before: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every array of a chunk has one entry per frame; timing columns that WGEP1 writers left
    short (rows before the column first appeared) are padded at the front with NaN."""
    n = len(arrays["frames"])
    if before and arrays["frames"].shape[1:] != before[0]["frames"].shape[1:]:
        raise Damaged(f"chunk at byte {offset} has frames of shape {arrays['frames'].shape[1:]}, unlike the chunks before it")
    for name, a in arrays.items():
        if len(a) == n:
            continue
        if name.startswith("t_") and len(a) < n:
            arrays[name] = np.concatenate([np.full(n - len(a), np.nan, np.float32), a.astype(np.float32)])
            continue
        counts = ", ".join(f"{len(v)} {k}" for k, v in arrays.items() if not k.startswith("t_") or k == name)
        raise Damaged(f"chunk at byte {offset} holds inconsistent row counts ({counts})")
    return arrays


def _concatenate(chunk_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Merge chunks; a timing column missing from some chunks is NaN for their rows."""
    names = dict.fromkeys(k for c in chunk_list for k in c)
    merged = {}
    for k in names:
        parts = [c[k] if k in c else np.full(len(c["frames"]), np.nan, np.float32) for c in chunk_list]
        merged[k] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return merged


def _check_actions(actions: np.ndarray, metadata: dict[str, Any]) -> None:
    names = metadata.get("action_names")
    if len(actions) and (actions.min() < 0 or (names is not None and actions.max() >= len(names))):
        bad = int(actions.min()) if actions.min() < 0 else int(actions.max())
        limit = f"0..{len(names) - 1}" if names is not None else ">= 0"
        raise Damaged(f"holds action {bad}, outside the game's actions ({limit})")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The META record of a ``.wgep`` file without reading its frames, checked as
    :func:`read_episode` checks it (anything unusual is left to read_episode to name)."""
    path = Path(path)
    try:
        with open_regular(path, f"episode {path}", EPISODE_HINT) as f:
            magic = f.read(len(records.MAGIC))
            version = records.version_of(magic)
            header = records.HEADER if version == 2 else records.HEADER_V1
            head = f.read(header.size)
            kind, length = header.unpack_from(head)[:2] if len(head) == header.size else (None, 0)
            if version is None or kind != b"META" or length > MAX_JSON_BYTES:
                return read_episode(path).metadata
            data = magic + head + f.read(length)
    except OSError as e:
        raise WorldgameError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        framing = records.split(data)
        if not framing.records:
            return read_episode(path).metadata
        meta = _json(framing.records[0])
        _check_meta(meta)
    except Damaged:
        return read_episode(path).metadata
    return meta


def list_episodes(path: str | Path) -> list[Path]:
    """The ``.wgep`` files at ``path`` (a file, or a folder searched recursively), sorted."""
    path = Path(path)
    if not path.exists():
        raise WorldgameError(f"{path}: no such file or folder; record episodes there first with "
                             f"`worldgame collect out={path}` (or name the folder you collected into)")
    if not path.is_dir():
        check_regular(path, f"episode {path}", "pass a .wgep file or a folder of them")
        return [path]
    files = sorted(path.rglob(f"*{SUFFIX}"))
    if not files:
        raise WorldgameError(f"{path}: no {SUFFIX} episodes in this folder; run `worldgame collect out={path}` first")
    return files
