"""The .wgep episode format: round trip, crash safety, and clear errors for bad files."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from worldgame.data.episode import MAGIC, SUFFIX, EpisodeWriter, list_episodes, read_episode
from worldgame.errors import WorldgameError

META = {"game": "bouncer", "seed": 3, "frame_size": 8, "action_names": ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE"], "policy": "random"}


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    actions = rng.integers(0, 6, n)
    actions[0] = 0
    rewards = rng.normal(size=n).astype(np.float32)
    dones = rng.random(n) < 0.1
    timings = {"denoise": rng.random(n).astype(np.float32) * 20, "decode": rng.random(n).astype(np.float32)}
    return frames, actions, rewards, dones, timings


def _write(path, n: int = 50, flush_rows: int = 7):
    frames, actions, rewards, dones, timings = rows = _rows(n)
    with EpisodeWriter(path, META, flush_rows=flush_rows) as w:
        for i in range(n):
            w.add(
                frames[i],
                int(actions[i]),
                float(rewards[i]),
                bool(dones[i]),
                {k: float(v[i]) for k, v in timings.items()},
            )
    return rows


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / f"a{SUFFIX}"  # parent folders are made
    frames, actions, rewards, dones, timings = _write(path, n=50, flush_rows=7)  # several chunks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete file reads without a warning
        ep = read_episode(path)
    assert ep.complete is True
    assert len(ep) == 50
    assert ep.frames.dtype == np.uint8 and np.array_equal(ep.frames, frames)
    assert np.array_equal(ep.actions, actions)
    assert np.array_equal(ep.rewards, rewards)
    assert np.array_equal(ep.dones, dones)
    assert set(ep.timings_ms) == {"denoise", "decode"}
    for k, v in timings.items():
        assert np.array_equal(ep.timings_ms[k], v)
    for k, v in META.items():
        assert ep.metadata[k] == v
    assert ep.metadata["rows"] == 50  # the END summary is merged in


def test_close_summary_merged(tmp_path):
    path = tmp_path / f"s{SUFFIX}"
    w = EpisodeWriter(path, META)
    w.add(np.zeros((8, 8, 3), np.uint8), 0)
    w.close({"score": 4})
    w.close()  # closing twice is harmless
    ep = read_episode(path)
    assert ep.metadata["score"] == 4 and ep.metadata["game"] == "bouncer"
    assert ep.timings_ms == {}


_KILLED_WRITER = """
import sys, time, numpy as np
from worldgame.data.episode import EpisodeWriter
w = EpisodeWriter(sys.argv[1], {"game": "test"}, flush_seconds=0.2)
i = 0
while True:
    w.add(np.full((8, 8, 3), i % 256, np.uint8), i % 6, float(i), False, {"step": float(i)})
    i += 1
    time.sleep(0.001)  # a game-like pace; keeps the test light on CPU
    if i == 1:
        print("started", flush=True)
"""


def test_kill_9_loses_at_most_the_last_flush(tmp_path):
    path = tmp_path / f"killed{SUFFIX}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with pytest.warns(UserWarning, match="unfinished"):
        ep = read_episode(path)
    assert ep.complete is False
    n = len(ep)
    assert n > 0
    i = np.arange(n)
    assert np.array_equal(
        ep.frames, np.broadcast_to((i % 256).astype(np.uint8)[:, None, None, None], (n, 8, 8, 3))
    )
    assert np.array_equal(ep.actions, i % 6)
    assert np.array_equal(ep.rewards, i.astype(np.float32))
    assert np.array_equal(ep.timings_ms["step"], i.astype(np.float32))
    assert ep.metadata["game"] == "test"


def test_truncated_file_reads_complete_chunks(tmp_path):
    path = tmp_path / f"t{SUFFIX}"
    frames, *_ = _write(path, n=20, flush_rows=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # lose the END record and part of the last chunk
    with pytest.warns(UserWarning, match="unfinished"):
        ep = read_episode(path)
    assert ep.complete is False and len(ep) == 15
    assert np.array_equal(ep.frames, frames[:15])


def _chunk_offsets(data: bytes) -> list[tuple[int, int]]:
    """(payload start, payload length) of each CHNK record."""
    header = struct.Struct("<4sIII")  # WGEP2: kind, length, payload crc, header crc
    assert data.startswith(b"WGEP2\n")
    pos, out = len(MAGIC), []
    while pos < len(data):
        kind, length, _, _ = header.unpack_from(data, pos)
        if kind == b"CHNK":
            out.append((pos + header.size, length))
        pos += header.size + length
    return out


def test_damaged_chunk_named(tmp_path):
    path = tmp_path / f"damaged{SUFFIX}"
    _write(path, n=20, flush_rows=5)
    data = bytearray(path.read_bytes())
    chunks = _chunk_offsets(bytes(data))
    assert len(chunks) == 4
    start, length = chunks[1]
    for j in range(start + length // 2, start + length // 2 + 8):
        data[j] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WorldgameError) as err:
        read_episode(path)
    assert path.name in str(err.value) and "damaged" in str(err.value)


def test_not_an_episode(tmp_path):
    path = tmp_path / f"notes{SUFFIX}"
    path.write_text("hello, I am a text file\n")
    with pytest.raises(WorldgameError, match="not a worldgame episode") as err:
        read_episode(path)
    assert path.name in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / f"empty{SUFFIX}"
    path.write_bytes(b"")
    with pytest.raises(WorldgameError, match="not a worldgame episode"):
        read_episode(path)


def test_no_frames(tmp_path):
    path = tmp_path / f"none{SUFFIX}"
    EpisodeWriter(path, META).close()
    with pytest.raises(WorldgameError, match="no frames"):
        read_episode(path)


def test_missing_file(tmp_path):
    path = tmp_path / f"missing{SUFFIX}"
    with pytest.raises(WorldgameError) as err:
        read_episode(path)
    assert path.name in str(err.value)


def test_writer_never_overwrites(tmp_path):
    path = tmp_path / f"keep{SUFFIX}"
    path.write_bytes(b"precious")
    with pytest.raises(WorldgameError, match="already exists"):
        EpisodeWriter(path, META)
    assert path.read_bytes() == b"precious"


def test_list_episodes(tmp_path):
    for name in ("b", "a", "sub/c"):
        _write(tmp_path / f"{name}{SUFFIX}", n=2)
    (tmp_path / "other.txt").write_text("x")
    files = list_episodes(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.wgep", "b.wgep", "sub/c.wgep"]
    assert list_episodes(files[0]) == [files[0]]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorldgameError, match="no .wgep episodes"):
        list_episodes(empty)
    with pytest.raises(WorldgameError, match="no such file or folder"):
        list_episodes(tmp_path / "nowhere")
