"""`worldgame serve` against hostile clients: real aiohttp clients and raw sockets on loopback
against a real server (serve.start: the capped site, the header timeout) with the tiny checkpoint,
and `worldgame serve` itself for Ctrl+C and SIGTERM. Behaviour is asserted, not timings that flake
on a loaded machine: the flooding client is closed, the others keep getting frames."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import WSMsgType


def _cfg(tiny_checkpoint: Path, tmp_path: Path, *overrides: str):
    from worldgame.settings import load

    return load("serve", [f"checkpoint={tiny_checkpoint}", "backend=torch", "seed=0", "fps=60", "port=0",
                          f"sessions={tmp_path / 'sessions'}", *overrides])


@asynccontextmanager
async def serving(cfg):
    """The server as `worldgame serve` runs it (capped site, header timeout); yields (server, host:port)."""
    from worldgame.commands.serve import SERVER, start

    runner, site = await start(cfg)
    try:
        async with aiohttp.ClientSession() as session:
            yield runner.app[SERVER], f"127.0.0.1:{site.bound_port}", session
    finally:
        await runner.cleanup()


async def _texts_until(ws, want, timeout: float = 10) -> list[dict]:
    """Text messages until one for which ``want(message)`` is true (frames skipped)."""
    out, deadline = [], time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
        if msg.type == WSMsgType.TEXT:
            out.append(json.loads(msg.data))
            if want(out[-1]):
                return out


async def _frames(ws, n: int, timeout: float = 20) -> int:
    deadline, got = time.monotonic() + timeout, 0
    while got < n:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
        got += msg.type == WSMsgType.BINARY
    return got


async def _closed(ws, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return ws.close_code, msg.extra


def test_rebinding_host_is_refused(tiny_checkpoint, tmp_path):
    """A DNS-rebinding page (its own name, this port) is refused for the page and the socket."""
    async def main():
        async with serving(_cfg(tiny_checkpoint, tmp_path)) as (_, host, session):
            port = int(host.split(":")[1])
            evil = f"rebind.evil:{port}"
            page = await session.get(f"http://{host}/", headers={"Host": evil})
            assert page.status == 403 and "Host" in await page.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"http://{host}/ws", headers={"Host": evil, "Origin": f"http://{evil}"})
            assert refused.value.status == 403
            for other in (f"127.0.0.1:{port + 1}", "localhost", f"[::2]:{port}", f"localhost:{port}x"):
                assert (await session.get(f"http://{host}/", headers={"Host": other})).status == 403, other
            for ours in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
                assert (await session.get(f"http://{host}/", headers={"Host": ours})).status == 200, ours
            ws = await session.ws_connect(f"http://{host}/ws", headers={"Host": f"localhost:{port}",
                                                                        "Origin": f"http://localhost:{port}"})
            assert (await _texts_until(ws, lambda m: m["type"] == "hello"))[-1]["type"] == "hello"
            await ws.close()

    asyncio.run(main())


def _partial_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: " % port)  # never finished
    return sock


def _first_bytes(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(64)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connection_cap_and_header_timeout(tiny_checkpoint, tmp_path):
    """Connections over max_connections are answered 503 and closed at once; a client that never
    finishes its headers is closed after header_timeout; the places are free again after."""
    async def main():
        cfg = _cfg(tiny_checkpoint, tmp_path, "max_connections=4", "header_timeout=1.5")
        async with serving(cfg) as (_, host, session):
            port = int(host.split(":")[1])
            loop = asyncio.get_running_loop()
            slow = [await loop.run_in_executor(None, _partial_request, port) for _ in range(4)]
            await asyncio.sleep(0.2)
            assert (await loop.run_in_executor(None, _first_bytes, port)).startswith(b"HTTP/1.1 503")
            t0 = time.monotonic()
            closed = await asyncio.gather(*(loop.run_in_executor(None, _closed_within, s, 6) for s in slow))
            waited = time.monotonic() - t0
            assert all(closed) and waited < 5, (closed, waited)
            for s in slow:
                s.close()
            await asyncio.sleep(0.2)
            assert (await session.get(f"http://{host}/")).status == 200  # the places are free again

    asyncio.run(main())


def test_key_flood_is_cut_heavy_settings_refused_others_play(tiny_checkpoint, tmp_path):
    async def main():
        async with serving(_cfg(tiny_checkpoint, tmp_path, "max_messages=20")) as (server, host, session):
            player = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(player, lambda m: m["type"] == "hello")
            await _frames(player, 3)
            flooder = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(flooder, lambda m: m["type"] == "hello")
            sent = 0
            with pytest.raises((ConnectionError, RuntimeError)):  # the server stops reading, then closes
                for _ in range(2000):
                    await flooder.send_str(json.dumps({"type": "keys", "held": ["up"] if sent % 2 else []}))
                    sent += 1
                    if flooder.closed:
                        raise RuntimeError("closed")
                    await asyncio.sleep(0)
                code = await _closed(flooder)
                raise RuntimeError(str(code))
            code, reason = flooder.close_code, None
            if code is None:
                code, reason = await _closed(flooder)
            assert code == 1008, (code, reason, sent)
            assert await _frames(player, 20) == 20 and not player.closed  # the player plays on
            # a request over max_work (8 steps x 8 panels) is refused in one line; the dream goes on
            await player.send_str(json.dumps({"type": "steps", "value": 8}))
            await player.send_str(json.dumps({"type": "view", "value": "lcm_steps"}))
            refused = (await _texts_until(player, lambda m: m["type"] == "refused"))[-1]
            assert "refused" in refused["message"] and "\n" not in refused["message"]
            stats = (await _texts_until(player, lambda m: m["type"] == "stats" and m["steps"] == 8))[-1]
            assert stats["view"] == "stream"
            await _frames(player, 5)
            deadline = time.monotonic() + 5  # the flooder's dream ends once its close handshake times out
            while len(server.connections) > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(server.connections) == 1
            await player.close()

    asyncio.run(main())


def test_record_toggle_flood_is_capped(tiny_checkpoint, tmp_path):
    """Recordings per client are capped, one recording's length too; the replies name files, not paths."""
    async def main():
        cfg = _cfg(tiny_checkpoint, tmp_path, "record_per_client=3", "record_seconds=0.25")
        async with serving(cfg) as (_, host, session):
            ws = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(ws, lambda m: m["type"] == "hello")
            await _frames(ws, 2)
            notes = []
            for i in range(12):  # 30 Hz toggling, under the message limit
                await ws.send_str(json.dumps({"type": "record", "value": i % 2 == 0}))
                await asyncio.sleep(1 / 30)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=5)
                if msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == "recording":
                    notes.append(json.loads(msg.data)["message"])
                if any(n.startswith("not recording") for n in notes) and len(notes) >= 7:
                    break
            # one long recording is cut at record_seconds
            ws2 = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(ws2, lambda m: m["type"] == "hello")
            await _frames(ws2, 2)
            await ws2.send_str(json.dumps({"type": "record", "value": True}))
            saved = (await _texts_until(ws2, lambda m: m["type"] == "recording" and m["message"].startswith("saved")))[-1]
            await ws.close()
            await ws2.close()
            return notes, saved

    notes, saved = asyncio.run(main())
    files = sorted((tmp_path / "sessions").glob("*.wgep"))
    assert len(files) == 4, (files, notes)  # 3 from the toggler, 1 from the other client
    assert any(n == "not recording: this server allows 3 recordings per player" for n in notes), notes
    assert not any(str(tmp_path) in n for n in notes + [saved["message"]])
    assert "longest recording" in saved["message"] and not saved["active"]
    from worldgame.data.episode import read_episode

    long = read_episode(tmp_path / "sessions" / saved["message"].split()[1])
    assert long.complete and 2 <= len(long) <= 0.25 * 60 + 2


def test_unwritable_sessions_is_a_one_line_refusal(tiny_checkpoint, tmp_path):
    (tmp_path / "file").write_text("not a folder")  # a folder under a file cannot be made, even by root

    async def main():
        cfg = _cfg(tiny_checkpoint, tmp_path, f"sessions={tmp_path / 'file' / 'sessions'}")
        async with serving(cfg) as (_, host, session):
            ws = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(ws, lambda m: m["type"] == "hello")
            await _frames(ws, 2)
            await ws.send_str(json.dumps({"type": "record", "value": True}))
            note = (await _texts_until(ws, lambda m: m["type"] == "recording"))[-1]
            assert note["message"] == "not recording: the server cannot write its sessions folder" and not note["active"]
            assert await _frames(ws, 10) == 10 and not ws.closed  # the dream goes on
            await ws.close()

    asyncio.run(main())


def test_early_close_and_churn_no_traceback_no_load(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Clients that leave before their first message leave no traceback; connections that come and
    go load no model (the one loaded at start serves every dream)."""
    from worldgame.engine import factory

    loads = []
    real = factory.make_engine
    monkeypatch.setattr(factory, "make_engine", lambda *a, **k: loads.append(1) or real(*a, **k))

    async def main():
        async with serving(_cfg(tiny_checkpoint, tmp_path)) as (server, host, session):
            port = int(host.split(":")[1])
            keeper = await session.ws_connect(f"http://{host}/ws")
            await _texts_until(keeper, lambda m: m["type"] == "hello")
            for i in range(15):
                ws = await session.ws_connect(f"http://{host}/ws")
                if i % 3 == 0:
                    await ws.receive(timeout=10)  # the hello, then gone
                await ws.close()
            for _ in range(5):  # a raw handshake, then a reset
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
            await _frames(keeper, 10)
            await asyncio.sleep(0.5)
            assert len(server.connections) == 1
            await keeper.close()

    asyncio.run(main())
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err
    assert len(loads) == 1


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_signal_saves_the_open_recording_and_exits(tiny_checkpoint, tmp_path, signal_name):
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO

    from worldgame.data.episode import read_episode

    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen([sys.executable, "-m", "worldgame.cli", "serve", f"checkpoint={tiny_checkpoint}", "port=0",
                             "backend=torch", "fps=60", f"sessions={tmp_path}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split("open ")[1].split()[0]

        async def record():
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(url + "ws")
                await _texts_until(ws, lambda m: m["type"] == "hello")
                await ws.send_str(json.dumps({"type": "record", "value": True}))
                await _texts_until(ws, lambda m: m["type"] == "recording")
                await _frames(ws, 20)
                t0 = time.monotonic()
                proc.send_signal(getattr(signal, signal_name))
                code = await _closed(ws)
                return code, t0

        (code, _), t0 = asyncio.run(record())
        proc.wait(10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0 and took < 5, (proc.returncode, took, err)
    assert code == 1001 and "stopped" in out and "Traceback" not in err, (code, out, err)
    (session,) = tmp_path.glob("*.wgep")
    episode = read_episode(session)
    assert episode.complete and len(episode) >= 20
