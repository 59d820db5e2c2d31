"""Bounded decoding of one ``CHNK`` payload: zlib-compressed ``.npz`` of row-aligned arrays.

A payload comes from a file that may have been crafted, so nothing is allocated from what it
claims before the claim is checked: zlib output is capped, every array's ``.npy`` header (dtype,
shape) is read and checked against the limits before its data is read, and the data is read into
an array of exactly the checked size. No pickle is ever loaded (object dtypes are refused).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

MAX_CHUNK_ROWS = 2048  # the writer flushes every 512 rows (or sooner); a chunk never holds more
MAX_FRAME_SIZE = 1024  # frame side in pixels
MAX_CHUNK_BYTES = 256 << 20  # decompressed size of one chunk, whatever its frame size
MAX_ARRAYS = 64  # frames, actions, rewards, dones and up to 60 timing columns
MAX_HEADER = 4096  # bytes of one .npy header (numpy writes ~128)
CORE = {"frames": "u", "actions": "iu", "rewards": "f", "dones": "b"}  # name -> dtype kinds allowed


class ChunkError(Exception):
    """The chunk is not what the writer writes; the message says what is wrong."""


@dataclass
class Limits:
    """What one chunk may hold, derived from the file's META record."""

    frame_shape: tuple[int, int, int] | None  # (H, W, 3) from META frame_size; None: any up to the max
    max_bytes: int  # cap on the decompressed payload and on the arrays it declares

    @classmethod
    def for_frame_size(cls, frame_size: int | None) -> Limits:
        if frame_size is None:
            return cls(None, MAX_CHUNK_BYTES)
        row = frame_size * frame_size * 3 + 8 + 4 + 1 + 4 * (MAX_ARRAYS - len(CORE))
        return cls((frame_size, frame_size, 3), min(MAX_CHUNK_BYTES, MAX_CHUNK_ROWS * row + (1 << 20)))


def decode_chunk(payload: bytes, limits: Limits, budget: int) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of one chunk and the bytes they take; ``budget`` caps those bytes (the file's
    remaining allowance). Raises ChunkError for anything the writer would not have written."""
    raw = _inflate(payload, min(limits.max_bytes, budget + (64 << 10)))  # arrays + npz headers
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ChunkError(f"not an npz archive ({e})") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARRAYS:
            raise ChunkError(f"holds {len(infos)} arrays, more than {MAX_ARRAYS}")
        arrays: dict[str, np.ndarray] = {}
        used = 0
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if name in arrays or not (name in CORE or (name.startswith("t_") and name[2:].isidentifier())):
                raise ChunkError(f"unexpected array {info.filename!r}")
            try:
                with zf.open(info) as f:
                    shape, fortran, dtype = read_npy_header(f)
                    _check(name, shape, dtype, limits)
                    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    used += nbytes
                    if used > min(budget, limits.max_bytes):
                        raise ChunkError(f"declares {used} bytes of arrays, more than this file may hold")
                    arrays[name] = read_exact(f, shape, fortran, dtype, nbytes)
            except ChunkError:
                raise
            except Exception as e:
                reason = " ".join(str(e).split())[:160]  # numpy's messages span lines
                raise ChunkError(f"array {name!r} is unreadable ({type(e).__name__}: {reason})") from e
    missing = [k for k in CORE if k not in arrays]
    if missing:
        raise ChunkError(f"lacks {', '.join(missing)}")
    return arrays, used


def _inflate(payload: bytes, cap: int) -> bytes:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, cap + 1)
    except zlib.error as e:
        raise ChunkError(f"not zlib data ({e})") from e
    if len(raw) > cap or d.unconsumed_tail:
        raise ChunkError(f"decompresses to more than {cap} bytes (a chunk of this file's frames is smaller)")
    if not d.eof:
        raise ChunkError("zlib data is cut short")
    return raw


def read_npy_header(f: io.BufferedIOBase) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the ``.npy`` stream ``f``, its header bounded to MAX_HEADER bytes."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER)
    raise ChunkError(f"unsupported .npy version {version}")


def _check(name: str, shape: tuple[int, ...], dtype: np.dtype, limits: Limits) -> None:
    kinds = CORE.get(name, "f")
    if dtype.hasobject or dtype.kind not in kinds or dtype.itemsize > 8 or dtype.names:
        raise ChunkError(f"array {name!r} has dtype {dtype}, not a plain {'/'.join(kinds)} number type")
    if not shape or not all(isinstance(n, int) and n >= 0 for n in shape) or shape[0] > MAX_CHUNK_ROWS:
        raise ChunkError(f"array {name!r} has shape {shape}; a chunk holds at most {MAX_CHUNK_ROWS} rows")
    if name == "frames":
        want = limits.frame_shape
        ok = len(shape) == 4 and (
            shape[1:] == want if want else shape[3] == 3 and 0 < shape[1] <= MAX_FRAME_SIZE and 0 < shape[2] <= MAX_FRAME_SIZE
        )
        if dtype != np.uint8 or not ok:
            raise ChunkError(f"frames have shape {shape} and dtype {dtype}, not (rows, {want or 'H, W, 3'}) uint8")
    elif len(shape) != 1:
        raise ChunkError(f"array {name!r} has shape {shape}, not (rows,)")


def read_exact(f: io.BufferedIOBase, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, nbytes: int) -> np.ndarray:
    """Exactly ``nbytes`` from ``f`` into a new array (no intermediate copy); the caller has checked
    ``shape`` and ``dtype``, so a stream that inflates to more is never read past them."""
    flat = np.empty(nbytes, np.uint8)
    view = memoryview(flat)
    got = 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise ChunkError(f"array data is cut short ({got} of {nbytes} bytes)")
        got += n
    return flat.view(dtype).reshape(shape, order="F" if fortran else "C")
