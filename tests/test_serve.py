"""`worldgame serve`: a real aiohttp server on a free port with the tiny checkpoint, driven by real
WebSocket clients (frames, keys, a malformed-message barrage, the cap, Origin, idle timeout,
recording), and the page in a real browser (system chromium + chromedriver via selenium; skipped
where either is missing)."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

HEADER = struct.Struct(">4sIHHH")


def _cfg(tiny_checkpoint: Path, tmp_path: Path, *overrides: str):
    from worldgame.settings import load

    return load("serve", [f"checkpoint={tiny_checkpoint}", "backend=torch", "seed=0", "fps=60",
                          f"sessions={tmp_path / 'sessions'}", *overrides])


@asynccontextmanager
async def served(cfg):
    from worldgame.commands.serve import make_app

    client = TestClient(TestServer(make_app(cfg), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _hello(ws) -> dict:
    msg = await ws.receive(timeout=30)
    assert msg.type == WSMsgType.TEXT, msg
    hello = json.loads(msg.data)
    assert hello["type"] == "hello", hello
    return hello


async def _frames(ws, n: int, timeout: float = 20) -> list[tuple[int, int, int, int, bytes]]:
    """The next ``n`` frames (number, panels, h, w, rgb), skipping text messages."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
        if msg.type == WSMsgType.BINARY:
            magic, number, panels, h, w = HEADER.unpack_from(msg.data)
            assert magic == b"WGF1" and len(msg.data) == HEADER.size + panels * h * w * 3
            out.append((number, panels, h, w, msg.data[HEADER.size:]))
    return out


async def _until_text(ws, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == kind:
            return json.loads(msg.data)
        assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg


def test_frames_keys_controls_and_recording(tiny_checkpoint, tmp_path):
    from worldgame.engine.session import regenerate

    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path)) as client:
            ws = await client.ws_connect("/ws")
            hello = await _hello(ws)
            assert set(hello["keys"]) >= {"up", "down", "left", "right", "space"} and hello["frame_size"] == 64
            assert hello["native_size"] is None or len(hello["native_size"]) == 2
            frames = await _frames(ws, 5)
            assert all((p, h, w) == (1, 64, 64) for _, p, h, w, _ in frames)
            assert [f[0] for f in frames] == sorted(f[0] for f in frames)
            await ws.send_str(json.dumps({"type": "keys", "held": ["left"]}))
            await ws.send_str(json.dumps({"type": "steps", "value": 2}))
            await ws.send_str(json.dumps({"type": "view", "value": "lcm_steps"}))
            for _ in range(50):  # the LCM Steps view: one panel per step
                (_, panels, *_), = await _frames(ws, 1)
                if panels == 2:
                    break
            assert panels == 2
            for view, n in (("temporal", 2), ("world_model", 2), ("stream", 1)):
                await ws.send_str(json.dumps({"type": "view", "value": view}))
                for _ in range(50):
                    (_, panels, *_), = await _frames(ws, 1)
                    if panels == n:
                        break
                assert panels == n, view
            for m in ({"type": "fusion", "value": "latent"}, {"type": "resync"}, {"type": "reset"},
                      {"type": "keys", "held": ["up", "space"]}, {"type": "keys", "held": []}):
                await ws.send_str(json.dumps(m))
            stats = await _until_text(ws, "stats")
            for _ in range(20):
                if stats["fusion"] == "latent" and stats["steps"] == 2:
                    break
                stats = await _until_text(ws, "stats")
            assert stats["steps"] == 2 and stats["fusion"] == "latent"
            assert {"input", "denoise", "decode", "output"} <= set(stats["stages_ms"])
            assert stats["score"].startswith("score none (no event head)")  # a checkpoint without one says so
            await ws.send_str(json.dumps({"type": "record", "value": True}))
            started = await _until_text(ws, "recording")
            assert started["active"]
            await ws.send_str(json.dumps({"type": "keys", "held": ["right"]}))
            await _frames(ws, 10)
            await ws.send_str(json.dumps({"type": "resync"}))
            await _frames(ws, 3)
            await ws.send_str(json.dumps({"type": "record", "value": False}))
            saved = await _until_text(ws, "recording")
            assert not saved["active"] and saved["message"].startswith("saved ")
            await ws.close()
            name = saved["message"].removeprefix("saved ")
            assert "/" not in name  # the client learns the file's name, not the server's folders
            return tmp_path / "sessions" / name

    session = asyncio.run(main())
    report = regenerate(session, device="cpu")  # the usual session format: replays bit-identically
    assert report["frames"] >= 13 and report["identical"], report


BAD_MESSAGES = [
    "", "not json", "{", "[]", "null", "1", '"keys"', "{}", '{"type": 1}', '{"type": null}', '{"type": "fly"}',
    '{"type": "keys"}', '{"type": "keys", "held": "left"}', '{"type": "keys", "held": [1]}',
    '{"type": "keys", "held": ["escape"]}', '{"type": "keys", "held": ["left", "left"]}',
    '{"type": "keys", "held": ["up","down","left","right","space","w","a","s","d"]}',
    '{"type": "keys", "held": [], "x": 1}', '{"type": "steps", "value": 3}', '{"type": "steps", "value": "4"}',
    '{"type": "steps", "value": true}', '{"type": "steps", "value": 4.0}', '{"type": "steps"}',
    '{"type": "fusion", "value": "blur"}', '{"type": "fusion", "value": 1}', '{"type": "view", "value": "sideways"}',
    '{"type": "view", "value": ["stream"]}', '{"type": "record", "value": "yes"}', '{"type": "reset", "value": 1}',
    '{"type": "resync", "seed": 3}', '{"type": "steps", "value": NaN}', '{"type": "steps", "value": Infinity}',
    '{"type": "checkpoint", "value": "/etc"}', '{"type": "keys", "held": [["left"]]}',
    "[" * 5000, '{"type": "keys", "held": ["' + "a" * 2000 + '"]}', "\udcff",
    b"\x00\x01binary", b"",
]
# and every field given each value of the wrong type or out of its range (record's true is valid)
WRONG = [None, True, False, -1, 0, 3, 2**40, 1.5, "", "x" * 300, [], {}, ["left"], {"a": 1}]
VALID = {"steps": 4, "fusion": "off", "view": "stream", "record": True}
BAD_MESSAGES += [json.dumps({"type": t, "value": v}) for t in VALID for v in WRONG if not (t == "record" and isinstance(v, bool))]
BAD_MESSAGES += [json.dumps({"type": "keys", "held": v}) for v in WRONG if v not in ([], ["left"])]
BAD_MESSAGES += [json.dumps({"type": t, "value": v, "extra": 1}) for t, v in VALID.items()]
BAD_MESSAGES += [json.dumps({"type": t, "value": 1}) for t in ("reset", "resync")] + [json.dumps({"Type": "reset"})]
BAD_MESSAGES += [json.dumps({"type": "command", "value": v}) for v in ("quit", "CONTEXT_NOISE", "", None, 1, ["context_noise"])]


def test_malformed_messages_close_only_their_connection(tiny_checkpoint, tmp_path):
    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path, "max_clients=3")) as client:
            keeper = await client.ws_connect("/ws")
            await _hello(keeper)
            closes = {}
            for i, bad in enumerate(BAD_MESSAGES):
                ws = await client.ws_connect("/ws")
                await _hello(ws)
                if isinstance(bad, bytes):
                    await ws.send_bytes(bad)
                else:
                    await ws._writer.send_frame(bad.encode("utf-8", "surrogatepass"), aiohttp.WSMsgType.TEXT)
                deadline = time.monotonic() + 10
                while True:
                    msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                        break
                closes[i] = (ws.close_code, msg.extra)
                await ws.close()
                assert "Traceback" not in str(msg.extra)
                # the keeper still plays
                await _frames(keeper, 2)
            await keeper.send_str(json.dumps({"type": "keys", "held": ["up"]}))
            await _frames(keeper, 3)
            assert not keeper.closed
            await keeper.close()
            return closes

    closes = asyncio.run(main())
    assert len(closes) == len(BAD_MESSAGES) >= 100
    assert all(code in (1008, 1009, 1007) for code, _ in closes.values()), closes
    assert sum(code == 1008 for code, _ in closes.values()) >= 30, closes


def test_cap_busy_origin_and_idle(tiny_checkpoint, tmp_path):
    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path, "max_clients=1", "idle_timeout=1.5")) as client:
            host = f"{client.host}:{client.port}"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
            assert refused.value.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await client.ws_connect("/ws", headers={"Origin": f"http://{client.host}:{client.port + 1}"})
            first = await client.ws_connect("/ws", headers={"Origin": f"http://{host}"})
            await _hello(first)
            second = await client.ws_connect("/ws")
            msg = await second.receive(timeout=10)
            assert json.loads(msg.data)["type"] == "busy" and "busy" in json.loads(msg.data)["message"]
            msg = await second.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE and second.close_code == 1013
            await _frames(first, 3)
            t0 = time.monotonic()
            while True:  # no message from the first client: it is closed as idle
                msg = await first.receive(timeout=10)
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                    break
            assert 1.0 < time.monotonic() - t0 < 5 and msg.extra == "idle timeout"
            third = await client.ws_connect("/ws")  # its place is free again
            await _hello(third)
            await _frames(third, 2)
            await third.close()
            page = await client.get("/")
            assert page.status == 200 and "<canvas" in await page.text()
            assert (await client.get("/app.js")).status == 200
            assert (await client.get("/../pyproject.toml")).status == 404

    asyncio.run(main())


def _stalled_client(port: int):
    """A WebSocket client that does the handshake and then never reads (a tiny receive buffer)."""
    import base64
    import os
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_slow_client_drops_frames_and_stalls_nobody(tiny_checkpoint, tmp_path):
    """A client that stops reading gets frames dropped (one-slot mailbox, nothing queued for it)
    while another client keeps its frame rate."""
    from worldgame.commands.serve import SERVER

    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path, "view=lcm_steps", "steps=8")) as client:
            server = client.server.app[SERVER]
            slow = await asyncio.get_running_loop().run_in_executor(None, _stalled_client, client.port)
            fast = await client.ws_connect("/ws")
            await _hello(fast)
            t0 = time.monotonic()
            got = await _frames(fast, 150, timeout=30)  # 60 Hz ticks: 2.5 s; the stalled client reads nothing
            elapsed = time.monotonic() - t0
            counts = [(c.frames, c.sent, c.dropped) for c in server.connections]
            await fast.close()
            slow.close()
            return got, elapsed, counts

    got, elapsed, counts = asyncio.run(main())
    assert len(got) == 150 and elapsed < 10, elapsed
    frames, sent, lost = max(counts, key=lambda v: v[2])  # the stalled one
    assert lost > 0 and sent + lost <= frames and sent < frames / 2, counts


def test_keymap_and_frame_message():
    import numpy as np

    from worldgame.commands.serve import frame_message
    from worldgame.engine.keys import KeyMap

    keymap = KeyMap(["NOOP", "UP", "LEFT", "FIRE", "UPFIRE"], {"UP": ["up"], "LEFT": ["left"], "FIRE": ["space"],
                                                               "UPFIRE": ["up+space"]})
    assert keymap.action([]) == 0 and keymap.action(["up"]) == 1
    assert keymap.action(["up", "left"]) == 2 and keymap.action(["left", "up"]) == 1  # newest press wins
    assert keymap.action(["space", "left", "up"]) == 4  # the longer combination wins
    msg = frame_message(7, [np.zeros((4, 5, 3), np.uint8)] * 2)
    assert HEADER.unpack_from(msg) == (b"WGF1", 7, 2, 4, 5) and len(msg) == HEADER.size + 120


def test_bad_serve_settings_are_one_line(run_cli):
    for bad in ("port=70000", "max_clients=0", "host=a;b", "idle_timeout=-1", "steps=3"):
        result = run_cli("serve", bad, timeout=60)
        assert result.returncode == 2, (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and bad.split("=")[0] in result.stderr


# --- the page in a real browser --------------------------------------------------------------------

def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver not installed (.ci/run installs them)")
def test_page_in_a_real_browser(tiny_checkpoint, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    import threading

    from aiohttp import web
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from worldgame.commands.serve import Connection, make_app

    received: list[list[str]] = []
    original = Connection.handle

    def spy(self, msg):
        if msg.type == "keys":
            received.append(list(msg.held))
        return original(self, msg)

    cfg = _cfg(tiny_checkpoint, tmp_path)
    ready, port = threading.Event(), []
    loop = asyncio.new_event_loop()

    async def start():
        runner = web.AppRunner(make_app(cfg))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])
        ready.set()
        return runner

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    Connection.handle = spy
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    driver = None
    try:
        assert ready.wait(30)
        browser, chromedriver = _chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{port[0]}/")
        sample = ("const c=document.getElementById('game');const d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;"
                  "let s=0;for(let i=0;i<d.length;i+=97)s=(s*31+d[i])%1000000007;return [window.worldgame.frames,s,c.width,c.height];")
        deadline = time.monotonic() + 20
        while driver.execute_script(sample)[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        frames0, sum0, width, height = driver.execute_script(sample)
        assert frames0 >= 3 and (width, height) == (512, 512)
        time.sleep(0.5)
        frames1, sum1, _, _ = driver.execute_script(sample)
        assert frames1 > frames0 and sum1 != sum0, "the canvas does not change"
        canvas = driver.find_element(By.ID, "game")
        canvas.click()
        webdriver.ActionChains(driver).key_down(Keys.ARROW_LEFT).pause(0.3).key_up(Keys.ARROW_LEFT).perform()
        deadline = time.monotonic() + 5
        while [] not in received[1:] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received[:2] == [["left"], []], received
        for view in ("lcm_steps", "temporal", "world_model", "stream"):  # the four modes, by their buttons
            driver.find_element(By.ID, f"view-{view}").click()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and f"view {view}" not in driver.find_element(By.ID, "hud").text:
                time.sleep(0.05)
            assert f"view {view}" in driver.find_element(By.ID, "hud").text
            if view == "lcm_steps":
                time.sleep(0.3)
                room = driver.execute_script("return document.body.clientWidth")
                assert driver.execute_script(sample)[2] <= max(320, room)  # 4 steps: four panels, shrunk to fit the page
            if view == "world_model":  # its two panels are labelled, as in the window
                deadline = time.monotonic() + 5
                captions = []
                while time.monotonic() < deadline and "real game" not in captions:
                    captions = driver.execute_script("return (window.worldgame.stats || {}).captions || []")
                    time.sleep(0.05)
                assert captions == ["real game", "model"], captions
        # the table's pause reaches the page: its button (lit while paused) holds the canvas, the P key goes on
        pause = driver.find_element(By.ID, "command-pause")
        assert pause.text == "pause (P)"

        def lit() -> bool:
            return "on" in (pause.get_attribute("class") or "").split()

        for press, on in ((pause.click, True), (lambda: webdriver.ActionChains(driver).send_keys("p").perform(), False)):
            press()
            deadline = time.monotonic() + 5
            while lit() != on and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lit() == on
            time.sleep(0.3)  # the frames in flight
            before = driver.execute_script(sample)
            time.sleep(0.6)
            after = driver.execute_script(sample)
            assert after[0] > before[0], "no frames come"
            assert (after[1] == before[1]) == on, "the canvas changes while paused" if on else "the dream does not go on"
        hud = driver.find_element(By.ID, "hud").text
        assert "denoise (all steps)" in hud and "VAE decode" in hud and "FPS" in hud
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
    finally:
        Connection.handle = original
        if driver is not None:
            driver.quit()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_engine_error_is_one_line_and_others_play_on(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from worldgame.commands import serve

    real_tick = serve.Connection.tick

    def tick(self, *args):
        if getattr(self, "doomed", False):
            raise RuntimeError("boom /secret/path")
        return real_tick(self, *args)

    monkeypatch.setattr(serve.Connection, "tick", tick)

    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path)) as client:
            good = await client.ws_connect("/ws")
            await _hello(good)
            bad = await client.ws_connect("/ws")
            seed = (await _hello(bad))["seed"]
            for conn in client.server.app[serve.SERVER].connections:
                conn.doomed = conn.seed == seed
            texts = []
            for ws in (good, bad):
                while True:
                    msg = await ws.receive(timeout=10)
                    if msg.type == WSMsgType.TEXT:
                        texts.append(msg.data)
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) or (msg.type == WSMsgType.BINARY and ws is good):
                        break
            closed = [ws for ws in (good, bad) if ws.closed]
            assert len(closed) == 1 and closed[0].close_code == 1011
            other = good if closed[0] is bad else bad
            await _frames(other, 5)
            assert not any("boom" in t or "Traceback" in t for t in texts)
            await other.close()

    asyncio.run(main())
    assert "boom" in capsys.readouterr().err  # the story is on the server's stderr


def test_cli_serves_the_page(tiny_checkpoint, tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request

    from conftest import REPO

    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen([sys.executable, "-m", "worldgame.cli", "serve", f"checkpoint={tiny_checkpoint}", "port=0",
                             "backend=torch", f"sessions={tmp_path}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("worldgame serve: open http://127.0.0.1:"), line
        url = line.split("open ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"<canvas" in page.read()

        async def one_frame():
            async with aiohttp.ClientSession() as session, session.ws_connect(url + "ws") as ws:
                await _hello(ws)
                await _frames(ws, 2)

        asyncio.run(one_frame())
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_page_gets_its_step_set_and_commands_from_hello(tiny_checkpoint, tmp_path):
    """hello carries the step set and the page's extra commands; a command message reaches the dream
    (context noise cycles, and the stats say so); an unknown command closes with a reason."""
    from worldgame.settings import STEP_COUNTS

    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path)) as client:
            ws = await client.ws_connect("/ws")
            hello = await _hello(ws)
            assert hello["step_counts"] == list(STEP_COUNTS)
            assert {"value": "context_noise", "label": "context noise", "keys": ["n"]} in hello["commands"]
            await _frames(ws, 2)
            first = (await _until_text(ws, "stats"))["settings"]
            await ws.send_str(json.dumps({"type": "command", "value": "context_noise"}))
            for _ in range(40):
                stats = await _until_text(ws, "stats")
                if stats["settings"] != first:
                    break
            assert first[0].startswith("context noise") and stats["settings"] != first, (first, stats["settings"])
            await ws.send_str(json.dumps({"type": "command", "value": "quit"}))
            while (await ws.receive(timeout=10)).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                pass
            assert ws.close_code == 1008

    asyncio.run(main())


def test_the_page_pauses_through_the_table(tiny_checkpoint, tmp_path):
    """P (the table's pause control, sent as a command) holds the dream in the page as in the window:
    frames keep coming but stop changing, '.' steps exactly one, P again goes on; the stats say so."""

    async def stats_until(ws, paused: bool) -> dict:
        for _ in range(80):
            stats = await _until_text(ws, "stats")
            if stats["controls"].get("pause") is paused:
                return stats
        raise AssertionError(f"the stats never said pause={paused}")

    async def main():
        async with served(_cfg(tiny_checkpoint, tmp_path)) as client:
            ws = await client.ws_connect("/ws")
            hello = await _hello(ws)
            assert {"value": "pause", "label": "pause", "keys": ["p"]} in hello["commands"]  # a button, key P
            await _frames(ws, 3)
            await ws.send_str(json.dumps({"type": "command", "value": "pause"}))
            stats = await stats_until(ws, True)
            assert stats["notice"].startswith("paused")
            await _frames(ws, 1)  # the frame that went out with those stats
            held = {rgb for *_, rgb in await _frames(ws, 6)}
            assert len(held) == 1, "frames change while paused"
            await ws.send_str(json.dumps({"type": "command", "value": "step_once"}))
            stepped = None
            for _ in range(60):
                ((*_, rgb),) = await _frames(ws, 1)
                if rgb not in held:
                    stepped = rgb
                    break
            assert stepped is not None, "'.' did not step a frame"
            assert {rgb for *_, rgb in await _frames(ws, 4)} == {stepped}  # one frame, then held again
            await ws.send_str(json.dumps({"type": "command", "value": "pause"}))
            await stats_until(ws, False)
            assert len({rgb for *_, rgb in await _frames(ws, 6)}) > 1, "the dream does not go on"
            await ws.close()

    asyncio.run(main())
