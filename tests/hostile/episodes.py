"""A generated corpus of crafted ``.wgep`` files: bombs, lying headers, valid-checksum garbage.

Every case is built here from scratch (no committed binaries). ``refused()`` yields files the
reader must refuse with one line; ``tolerated()`` yields files a crash could have produced, which
must read back as their complete chunks, marked unfinished.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ACTIONS = ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE"]
META = {"game": "bouncer", "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
        "seed": 0, "frame_size": 64, "action_names": ACTIONS, "policy": "random"}
FS = 64


def rec2(kind: bytes, payload: bytes, length: int | None = None) -> bytes:
    """A WGEP2 record whose header checksum is valid (even when ``length`` lies)."""
    head = struct.pack("<4sII", kind, len(payload) if length is None else length, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def rec1(kind: bytes, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack("<4sII", kind, len(payload) if length is None else length, zlib.crc32(payload)) + payload


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def rows(n: int = 4, fs: int = FS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    actions = rng.integers(0, 6, n).astype(np.int16)
    actions[0] = 0
    return {"frames": rng.integers(0, 255, (n, fs, fs, 3), dtype=np.uint8), "actions": actions,
            "rewards": np.zeros(n, np.float32), "dones": np.zeros(n, bool)}


def chunk(**arrays: np.ndarray) -> bytes:
    return zlib.compress(npz(**arrays), 1)


def npy_header(shape: tuple, descr: str = "|u1") -> bytes:
    """A .npy v1 header declaring ``shape`` of ``descr`` (no data follows unless added)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * ((64 - (len(text) + 11) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def raw_zip(members: dict[str, bytes], deflate: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def core_members(n: int = 4) -> dict[str, bytes]:
    r = rows(n)
    out = {}
    for k, v in r.items():
        b = io.BytesIO()
        np.save(b, v)
        out[f"{k}.npy"] = b.getvalue()
    return out


def file2(*records: bytes, meta: dict | None = None) -> bytes:
    return b"WGEP2\n" + rec2(b"META", json.dumps(META if meta is None else meta).encode()) + b"".join(records)


def good_file(n_chunks: int = 3, n: int = 4, end: bool = True) -> bytes:
    recs = [rec2(b"CHNK", chunk(**rows(n))) for _ in range(n_chunks)]
    if end:
        recs.append(rec2(b"END ", json.dumps({"rows": n * n_chunks}).encode()))
    return file2(*recs)


def zlib_bomb(size: int) -> bytes:
    """``size`` zero bytes at zlib level 9 (~1000:1), built without holding them in memory."""
    c = zlib.compressobj(9)
    block = bytes(1 << 20)
    out = [c.compress(block) for _ in range(size >> 20)]
    return b"".join(out) + c.flush()


class Gadget:
    """Unpickling this writes the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned by a pickle"))


def pickled_npz(marker: Path) -> bytes:
    arr = np.empty(4, object)
    arr[:] = [Gadget(marker)] * 4
    members = core_members()
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=True)
    members["rewards.npy"] = b.getvalue()
    return zlib.compress(raw_zip(members), 1)


def refused(marker: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(name, builder) of files the reader must refuse with one line."""
    r = rows()
    g = rows()
    yield "empty", lambda: b""
    yield "magic_only_v9", lambda: b"WGEP9\n"
    yield "text_file", lambda: b"hello, I am not an episode\n" * 10
    yield "no_meta", lambda: b"WGEP2\n" + rec2(b"CHNK", chunk(**r))
    yield "meta_only", lambda: file2()
    yield "meta_not_json", lambda: b"WGEP2\n" + rec2(b"META", b"{not json") + rec2(b"CHNK", chunk(**r))
    yield "meta_not_utf8", lambda: b"WGEP2\n" + rec2(b"META", b"\xff\xfe{}") + rec2(b"CHNK", chunk(**r))
    yield "meta_json_list", lambda: b"WGEP2\n" + rec2(b"META", b"[1,2,3]") + rec2(b"CHNK", chunk(**r))
    yield "meta_deep_nesting", lambda: b"WGEP2\n" + rec2(b"META", b"[" * 200_000 + b"]" * 200_000)
    yield "meta_huge_int", lambda: b"WGEP2\n" + rec2(b"META", b'{"seed": ' + b"9" * 100_000 + b"}")
    yield "meta_frame_size_str", lambda: file2(rec2(b"CHNK", chunk(**r)), meta={**META, "frame_size": "64"})
    yield "meta_frame_size_zero", lambda: file2(rec2(b"CHNK", chunk(**r)), meta={**META, "frame_size": 0})
    yield "meta_frame_size_huge", lambda: file2(rec2(b"CHNK", chunk(**r)), meta={**META, "frame_size": 10**6})
    yield "meta_actions_not_list", lambda: file2(rec2(b"CHNK", chunk(**r)), meta={**META, "action_names": 6})
    yield "two_metas", lambda: file2(rec2(b"META", b"{}"), rec2(b"CHNK", chunk(**r)))
    yield "unknown_kind", lambda: file2(rec2(b"EVIL", b"x"), rec2(b"CHNK", chunk(**r)))
    yield "record_after_end", lambda: good_file() + rec2(b"CHNK", chunk(**r))
    yield "end_not_json", lambda: file2(rec2(b"CHNK", chunk(**r)), rec2(b"END ", b"\x00garbage"))
    yield "end_rows_lie", lambda: file2(rec2(b"CHNK", chunk(**r)), rec2(b"END ", b'{"rows": 1501}'))
    yield "chunk_not_zlib", lambda: file2(rec2(b"CHNK", b"this is not zlib data at all"))
    yield "chunk_zlib_cut", lambda: file2(rec2(b"CHNK", chunk(**r)[:-20]))
    yield "chunk_zlib_not_zip", lambda: file2(rec2(b"CHNK", zlib.compress(b"PK\x03\x04 not really a zip" * 20)))
    yield "chunk_empty_payload", lambda: file2(rec2(b"CHNK", b""))
    yield "zlib_bomb_64MiB", lambda: file2(rec2(b"CHNK", zlib_bomb(64 << 20)))
    yield "zlib_bomb_after_good_chunk", lambda: file2(rec2(b"CHNK", chunk(**r)), rec2(b"CHNK", zlib_bomb(48 << 20)))
    yield "npy_claims_2M_frames", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "frames.npy": npy_header((2_000_000, FS, FS, 3))}))))
    yield "npy_claims_giant_frames", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "frames.npy": npy_header((4, 100_000, 100_000, 3))}))))
    yield "npy_claims_negative", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "frames.npy": npy_header((-4, FS, FS, 3))}))))
    yield "npy_claims_2048_rows_no_data", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "frames.npy": npy_header((2048, FS, FS, 3))}))))
    yield "npz_deflate_bomb_member", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "frames.npy": npy_header((2048, FS, FS, 3)) + bytes(2048 * FS * FS * 3)}, deflate=True), 9)))
    yield "npy_header_huge", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip(
        {**core_members(), "actions.npy": b"\x93NUMPY\x01\x00\xff\xff" + b" " * 65535}))))
    yield "npy_object_dtype_pickle", lambda: file2(rec2(b"CHNK", pickled_npz(marker)))
    yield "npy_unicode_dtype", lambda: file2(rec2(b"CHNK", chunk(**{**r, "actions": np.array(["a"] * 4)})))
    yield "npy_structured_dtype", lambda: file2(rec2(b"CHNK", chunk(**{**r, "rewards": np.zeros(4, [("a", "<f4")])})))
    yield "npy_complex_rewards", lambda: file2(rec2(b"CHNK", chunk(**{**r, "rewards": np.zeros(4, np.complex64)})))
    yield "npy_float_actions", lambda: file2(rec2(b"CHNK", chunk(**{**r, "actions": np.zeros(4, np.float32)})))
    yield "frames_float", lambda: file2(rec2(b"CHNK", chunk(**{**r, "frames": r["frames"].astype(np.float32)})))
    yield "frames_rank3", lambda: file2(rec2(b"CHNK", chunk(**{**r, "frames": r["frames"][0]})))
    yield "frames_rank5", lambda: file2(rec2(b"CHNK", chunk(**{**r, "frames": r["frames"][None]})))
    yield "frames_wrong_size", lambda: file2(rec2(b"CHNK", chunk(**{**r, "frames": r["frames"][:, :32, :32]})))
    yield "frames_4_channels", lambda: file2(rec2(b"CHNK", chunk(**{**r, "frames": np.zeros((4, FS, FS, 4), np.uint8)})))
    yield "actions_2d", lambda: file2(rec2(b"CHNK", chunk(**{**r, "actions": np.zeros((4, 2), np.int16)})))
    yield "inconsistent_4_2_9", lambda: file2(rec2(b"CHNK", chunk(
        frames=g["frames"], actions=g["actions"][:2], rewards=np.zeros(9, np.float32), dones=g["dones"])))
    yield "dones_short", lambda: file2(rec2(b"CHNK", chunk(**{**r, "dones": np.zeros(3, bool)})))
    yield "timing_too_long", lambda: file2(rec2(b"CHNK", chunk(**r, t_denoise=np.zeros(9, np.float32))))
    yield "missing_actions", lambda: file2(rec2(b"CHNK", chunk(frames=r["frames"], rewards=r["rewards"], dones=r["dones"])))
    yield "missing_frames", lambda: file2(rec2(b"CHNK", chunk(actions=r["actions"], rewards=r["rewards"], dones=r["dones"])))
    yield "unexpected_member", lambda: file2(rec2(b"CHNK", zlib.compress(raw_zip({**core_members(), "../evil.npy": b"x"}))))
    yield "too_many_members", lambda: file2(rec2(b"CHNK", chunk(**r, **{f"t_x{i}": np.zeros(4, np.float32) for i in range(70)})))
    yield "action_out_of_range", lambda: file2(rec2(b"CHNK", chunk(**{**r, "actions": np.array([0, 1, 99, 2], np.int16)})))
    yield "action_negative", lambda: file2(rec2(b"CHNK", chunk(**{**r, "actions": np.array([0, -1, 2, 2], np.int16)})))
    yield "frame_shape_changes", lambda: file2(rec2(b"CHNK", chunk(**r)), rec2(b"CHNK", chunk(**rows(4, 32))),
                                               meta={k: v for k, v in META.items() if k != "frame_size"})
    yield "chunk_over_row_limit", lambda: file2(rec2(b"CHNK", chunk(**rows(2049, 8))), meta={**META, "frame_size": 8})
    yield "length_over_limit", lambda: file2(rec2(b"CHNK", chunk(**r), length=(1 << 31)))
    yield "v2_header_crc_wrong", lambda: _flip(good_file(), 6 + len(rec2(b"META", json.dumps(META).encode())) + 13)
    yield "v2_flipped_length_byte", lambda: _flip(good_file(), 6 + len(rec2(b"META", json.dumps(META).encode())) + 5)
    yield "v2_flipped_kind_byte", lambda: _flip(good_file(), 6 + len(rec2(b"META", json.dumps(META).encode())) + 1)
    yield "v1_flipped_length_byte", lambda: _v1_flipped_length()
    yield "v1_length_past_end_records_after", lambda: _v1_flipped_length(byte=3)
    yield "v1_payload_crc_wrong", lambda: _flip(_v1_file(), 40)
    yield "valid_crc_garbage_chunk", lambda: file2(rec2(b"CHNK", bytes(range(256)) * 64))
    yield "garbage_after_magic", lambda: b"WGEP2\n" + bytes(range(1, 256)) * 8
    yield "chunk_before_meta", lambda: b"WGEP2\n" + rec2(b"CHNK", chunk(**r)) + rec2(b"META", json.dumps(META).encode())


def tolerated() -> Iterator[tuple[str, bytes, int]]:
    """(name, file, rows that must come back) for files a crash could leave."""
    full = good_file(n_chunks=3, n=4)
    meta_len = 6 + len(rec2(b"META", json.dumps(META).encode()))
    one = len(rec2(b"CHNK", chunk(**rows(4))))
    yield "cut_inside_end", full[:-3], 12
    yield "cut_inside_third_chunk", full[: meta_len + 2 * one + 20], 8
    yield "cut_inside_header", full[: meta_len + one + 7], 4
    yield "no_end_record", good_file(end=False), 12
    yield "zero_filled_tail", good_file(end=False) + bytes(4096), 12
    yield "lying_length_past_end", good_file(n_chunks=1, end=False) + rec2(b"CHNK", b"x" * 10, length=1 << 20), 4
    yield "v1_cut_short", _v1_file()[:-30], 4


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x40
    return bytes(b)


def _v1_file() -> bytes:
    recs = [rec1(b"CHNK", chunk(**rows(4))) for _ in range(2)]
    return b"WGEP1\n" + rec1(b"META", json.dumps(META).encode()) + b"".join(recs) + rec1(b"END ", b'{"rows": 8}')


def _v1_flipped_length(byte: int = 1) -> bytes:
    """WGEP1 has no header checksum: a flipped length byte either breaks the payload checksum
    (byte 1: +256) or runs past the end of the file while intact records follow (byte 3: +16 MiB)."""
    data = bytearray(_v1_file())
    at = 6 + len(rec1(b"META", json.dumps(META).encode())) + 4  # first CHNK's length field
    data[at + byte] ^= 0x01
    return bytes(data)


def legitimate(path: Path, rows_total: int = 1501) -> Path:
    """A real Bouncer episode as `worldgame collect` writes it (the memory yardstick)."""
    from worldgame.data.episode import EpisodeWriter
    from worldgame.games.bouncer import Bouncer

    game = Bouncer(infinite_lives=True)
    rng = np.random.default_rng(0)
    with EpisodeWriter(path, {**META, "game_config": {"_target_": "worldgame.games.bouncer.Bouncer"}}) as w:
        w.add(game.reset(0), 0)
        for _ in range(rows_total - 1):
            a = int(rng.integers(6))
            frame, reward, _, _ = game.step(a)
            w.add(frame, a, reward, False)
    return path


def pickle_of(marker: Path) -> bytes:
    return pickle.dumps(Gadget(marker), protocol=4)
