"""The record framing of ``.wgep`` files: split a file's bytes into checked records.

Two versions are read; the writer writes the newest:

* ``WGEP2``: ``kind (4) | length (u32 LE) | crc32 of payload (u32 LE) | crc32 of the 12 bytes
  before it (u32 LE) | payload``. The header checksum tells a damaged header (a flipped length
  byte) from a file cut short by a crash: only a header that checks out and whose payload runs
  past the end of the file is a crash.
* ``WGEP1``: the same without the header checksum. A payload that runs past the end is a crash
  unless another intact record can be found after the header, which proves the length is wrong.

Nothing here decompresses or parses a payload; limits on what a record may hold are checked in
``chunks.py`` and ``episode.py``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC_V1 = b"WGEP1\n"
MAGIC = b"WGEP2\n"
KINDS = (b"META", b"CHNK", b"END ")
HEADER_V1 = struct.Struct("<4sII")
HEADER = struct.Struct("<4sIII")
# No record the writer makes comes near this (a chunk is at most MAX_CHUNK_BYTES before zlib).
MAX_RECORD_BYTES = 256 << 20


class Damaged(Exception):
    """A record that is not what the writer wrote; the message names the byte offset."""


@dataclass
class Record:
    kind: bytes
    offset: int  # byte offset of the record header in the file
    payload: bytes


@dataclass
class Framing:
    """What ``split`` found: the records, and whether the file ended cleanly or was cut short."""

    version: int
    records: list[Record]
    truncated: bool


def pack(kind: bytes, payload: bytes) -> bytes:
    """One WGEP2 record, header and payload."""
    head = struct.pack("<4sII", kind, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def version_of(data: bytes) -> int | None:
    if data.startswith(MAGIC):
        return 2
    if data.startswith(MAGIC_V1):
        return 1
    return None


def split(data: bytes) -> Framing:
    """Split ``data`` (a whole file starting with a magic line) into checked records.

    Raises Damaged for anything a crash cannot explain; a file cut short inside its last record
    gives the records before it and ``truncated=True``.
    """
    version = version_of(data)
    if version is None:
        raise ValueError("no worldgame magic line")
    records: list[Record] = []
    truncated = False
    for item in _walk(data, version):
        if item is None:
            truncated = True
            break
        records.append(item)
    return Framing(version, records, truncated)


def _walk(data: bytes, version: int) -> Iterator[Record | None]:
    header = HEADER if version == 2 else HEADER_V1
    pos = len(MAGIC)
    while pos < len(data):
        if pos + header.size > len(data) or not any(data[pos:]):
            # a header cut short, or a tail the filesystem zero-filled after a power loss
            yield None
            return
        if version == 2:
            kind, length, crc, head_crc = header.unpack_from(data, pos)
            if zlib.crc32(data[pos : pos + 12]) != head_crc:
                raise Damaged(f"damaged record header at byte {pos} (header checksum mismatch)")
        else:
            kind, length, crc = header.unpack_from(data, pos)
        if kind not in KINDS:
            raise Damaged(f"unknown record {kind!r} at byte {pos}")
        if length > MAX_RECORD_BYTES:
            raise Damaged(f"record at byte {pos} declares {length} bytes, more than the {MAX_RECORD_BYTES >> 20} MiB limit")
        start, end = pos + header.size, pos + header.size + length
        if end > len(data):
            if version == 1 and _intact_record_after(data, start):
                raise Damaged(f"damaged record header at byte {pos} (its length runs past intact records)")
            yield None
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            raise Damaged(f"damaged {kind.decode(errors='replace')!r} record at byte {pos} (checksum mismatch)")
        yield Record(kind, pos, payload)
        pos = end


def _intact_record_after(data: bytes, start: int) -> bool:
    """WGEP1 only: does a whole record with a matching checksum begin anywhere after ``start``?

    A crash leaves nothing after the record it cut; a record found here means the length field
    in front of it was damaged.
    """
    budget = 4 * len(data)  # bytes checksummed at most: a file full of fake kinds stays linear
    for kind in (b"CHNK", b"END "):
        at = data.find(kind, start)
        while at != -1 and budget > 0:
            if at + HEADER_V1.size <= len(data):
                _, length, crc = HEADER_V1.unpack_from(data, at)
                end = at + HEADER_V1.size + length
                if end <= len(data):
                    budget -= length
                    if zlib.crc32(data[at + HEADER_V1.size : end]) == crc:
                        return True
            at = data.find(kind, at + 1)
    return False
