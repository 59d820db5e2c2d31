"""`worldgame serve`: the game in a web page. One page, one WebSocket; each connection gets its own
engine from the factory (its own dream, its own seed), stepped at the tick rate.

Protocol (``worldgame/web/app.js`` is the client):

* server → client, text: JSON ``{"type": "hello", ...}`` once (game, actions, key bindings, the
  allowed key names, frame size, native size, settings), ``{"type": "stats", ...}`` a few times a
  second (per-stage ms in the source pipeline's terms, server FPS, settings, recording), ``{"type":
  "busy"|"error"|"recording", "message": ...}``.
* server → client, binary: one frame: ``b"WGF1"``, uint32 frame number, uint16 panels, uint16 height,
  uint16 width (big-endian), then ``panels`` RGB images of height×width×3 bytes, left to right.
* client → server, text only, JSON objects of at most :data:`MAX_MESSAGE` bytes, checked by
  :func:`parse_message`; anything else closes that connection (code 1008 and the reason).

Safety: binds 127.0.0.1 unless told; a WebSocket whose Origin is not this server is refused (403);
the checkpoint is the server's; at most ``max_clients`` dreams (others get "busy" and close code
1013); a connection with no message for ``idle_timeout`` s is closed; frames go through a one-slot
mailbox, so a slow client misses frames instead of queueing them; errors reach the client as one
line, never a traceback (those go to the server's stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import struct
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from aiohttp import web

from worldgame.data.episode import EVENT_RESET, EVENT_STEP
from worldgame.engine.engines import FusionMode
from worldgame.engine.keys import LIVE_CONTROLS, PAGE_COMMANDS, KeyMap, keys_of
from worldgame.engine.views import View, parse_native_size
from worldgame.settings import STEP_COUNTS, ServeSettings

MAX_MESSAGE = 1024  # bytes of one client message
MAX_HELD = 8  # keys held at once in a "keys" message
PAGE_COMMAND_NAMES = {c.wire: c for c in PAGE_COMMANDS}
FRAME_MAGIC = b"WGF1"
HEADER = struct.Struct(">4sIHHH")
STATS_EVERY_S = 0.25
# the source's pipeline terms for the engine's stage names
STAGE_TERMS = {"input": "input buffer", "encode": "VAE encode", "denoise": "LCM denoise",
               "fusion": "temporal fusion", "decode": "VAE decode", "output": "output"}
CLOSE_INVALID, CLOSE_BUSY, CLOSE_IDLE, CLOSE_ERROR = 1008, 1013, 1000, 1011


class BadMessage(ValueError):
    """A client message outside the schema (the text is the close reason)."""


@dataclass
class Message:
    type: str
    held: list[str] = field(default_factory=list)
    value: Any = None


def parse_message(data: Any, allowed_keys: frozenset[str]) -> Message:
    """Check one client text message against the schema; raise BadMessage with a short reason.

    ``{"type": "keys", "held": [name, ...]}`` (key names from the checkpoint's bindings, oldest
    press first, at most 8, no repeats); ``{"type": "steps", "value": 1|2|4|8}``; ``{"type":
    "fusion", "value": "off"|"latent"|"pixel"}``; ``{"type": "view", "value": "stream"|"lcm_steps"|
    "temporal"|"world_model"}``; ``{"type": "record", "value": true|false}``; ``{"type": "reset"}``;
    ``{"type": "resync"}``; ``{"type": "command", "value": name}`` (a command the page has a button for,
    commands.PAGE_COMMANDS, by its ``wire`` name). No other fields.
    """
    if not isinstance(data, str):
        raise BadMessage("binary messages are not accepted")
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE:
        raise BadMessage(f"message over {MAX_MESSAGE} bytes")
    try:
        obj = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise BadMessage("not JSON") from e
    if not isinstance(obj, dict):
        raise BadMessage("not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadMessage("missing or non-string 'type'")
    fields = {"keys": {"type", "held"}, "steps": {"type", "value"}, "fusion": {"type", "value"},
              "view": {"type", "value"}, "record": {"type", "value"}, "reset": {"type"}, "resync": {"type"},
              "command": {"type", "value"}}
    if kind not in fields:
        raise BadMessage(f"unknown type {kind[:20]!r}")
    if set(obj) != fields[kind]:
        raise BadMessage(f"{kind}: fields must be exactly {', '.join(sorted(fields[kind]))}")
    value = obj.get("value")
    if kind == "keys":
        held = obj["held"]
        if not isinstance(held, list) or len(held) > MAX_HELD or not all(isinstance(k, str) for k in held):
            raise BadMessage(f"keys: 'held' must be a list of at most {MAX_HELD} key names")
        if len(set(held)) != len(held):
            raise BadMessage("keys: a key is listed twice")
        unknown = [k for k in held if k not in allowed_keys]
        if unknown:
            raise BadMessage(f"keys: unknown key {unknown[0][:20]!r}")
        return Message(kind, held=list(held))
    if kind == "steps" and (isinstance(value, bool) or value not in STEP_COUNTS or not isinstance(value, int)):
        raise BadMessage(f"steps: value must be one of {', '.join(map(str, STEP_COUNTS))}")
    if kind == "fusion" and value not in [m.value for m in FusionMode]:
        raise BadMessage("fusion: value must be off, latent or pixel")
    if kind == "view" and value not in [v.value for v in View]:
        raise BadMessage("view: value must be stream, lcm_steps, temporal or world_model")
    if kind == "record" and not isinstance(value, bool):
        raise BadMessage("record: value must be true or false")
    if kind == "command" and (not isinstance(value, str) or value not in PAGE_COMMAND_NAMES):
        raise BadMessage(f"command: value must be one of {', '.join(PAGE_COMMAND_NAMES) or '(none)'}")
    return Message(kind, value=value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def frame_message(number: int, frames: list[np.ndarray]) -> bytes:
    """One binary frame message: header, then the panels' RGB bytes."""
    h, w = frames[0].shape[:2]
    body = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    return HEADER.pack(FRAME_MAGIC, number & 0xFFFFFFFF, len(frames), h, w) + body


def origin_ok(origin: str | None, host: str | None) -> bool:
    """A browser's Origin must name this server (the Host it asked); clients without one pass."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == str(host).lower()


class Server:
    """The shared state: settings, the cap, the one thread all model work runs in (the event loop
    stays free to send and receive; dreams take turns, a few ms each), and a warm spare engine.

    The spare is made before the address is printed (:meth:`prepare`), so the first player's first
    frame needs no model load; each player takes the spare and the next one is made in the loader
    thread meanwhile (a new dream's load no longer stalls the dreams in play)."""

    def __init__(self, cfg: ServeSettings) -> None:
        self.cfg = cfg
        self.fps = cfg.fps  # None: the game's own tick rate, known once the first engine is made
        self.active = 0
        self.seeds = random.Random(cfg.seed)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worldgame-dream")
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worldgame-loader", initializer=_background_priority)
        self.spare: Future | None = None
        self.connections: set[Any] = set()
        self.log = print

    def make_engine(self, seed: int = 0) -> tuple[Any, dict[str, Any]]:
        """An engine from the factory for this server's checkpoint, warmed through a first reset
        (the seed only starts its sampler: each connection's first tick resets it at its own)."""
        from worldgame.engine.factory import make_engine

        with contextlib.redirect_stdout(sys.stderr):  # "loading ...": stdout's first line stays the address
            engine, metadata = make_engine(self.cfg, seed)
        if self.fps is None:
            self.fps = float(metadata["tick_hz"])  # the checkpoint's game at its own speed (Atari 15 Hz)
        engine.reset(seed)  # the VAE encoder's and the game's first calls are slow too
        return engine, metadata

    def prepare(self) -> None:
        """Make the first spare engine now (blocking): the model is loaded, traced and warm before
        anyone connects, and a checkpoint that cannot load fails here, with its one line."""
        self.spare = self.loader.submit(self.make_engine)
        self.spare.result()

    async def engine_for(self, seed: int) -> tuple[Any, dict[str, Any]]:
        """An engine for a new player: the spare (waiting for it while it is being made), or one made
        in the model thread where the spare failed; then the next spare is started."""
        spare, self.spare = self.spare, None
        try:
            if spare is not None:
                try:
                    return await asyncio.wrap_future(spare)
                except Exception:  # noqa: BLE001 -- the spare's failure is told by the fresh attempt below
                    traceback.print_exc(file=sys.stderr)
            return await asyncio.get_running_loop().run_in_executor(self.model_thread, self.make_engine, seed)
        finally:
            self.spare = self.loader.submit(self.make_engine)

    def close(self) -> None:
        """Stop the threads; a spare being made is finished first (torch cannot be interrupted), so
        no load outlives the server."""
        self.model_thread.shutdown(wait=False, cancel_futures=True)
        self.loader.shutdown(wait=True, cancel_futures=True)


def _background_priority() -> None:
    """The loader thread yields the CPU to the dreams in play (Linux: a thread's own nice value;
    elsewhere it runs at the usual priority)."""
    import threading

    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Connection:
    """One client: its tick core (tick_core.TickCore: engine, settings, recorder), its tick task,
    and a one-slot mailbox of the newest frame."""

    def __init__(self, server: Server, ws: Any, engine: Any, metadata: dict[str, Any], seed: int) -> None:
        from worldgame.engine.session import SessionRecorder
        from worldgame.engine.tick_core import TickCore

        self.server, self.ws, self.engine, self.seed = server, ws, engine, seed
        self.metadata = metadata
        self.core = TickCore(engine, seed, server.cfg.view, SessionRecorder(server.cfg.sessions, metadata))
        self.keymap = KeyMap(engine.action_names, engine.key_bindings)
        self.held: list[str] = []
        self.started = False
        self.mailbox: bytes | None = None  # the newest frame not yet sent
        self.statsbox: str | None = None  # the newest stats not yet sent
        self.mail = asyncio.Event()
        self.frames = self.sent = self.dropped = 0
        self.last_message = time.monotonic()
        self.stage_sum: dict[str, float] = {}
        self.stage_n = 0
        self.fps_marks: list[float] = []

    def hello(self) -> dict[str, Any]:
        status, live = self.engine.status(), self.engine.live
        commands = [{"value": c.wire, "label": c.value, "keys": keys_of(c)} for c in PAGE_COMMANDS if LIVE_CONTROLS.get(c) in live]
        return {
            "type": "hello", "game": self.metadata.get("game"), "actions": self.engine.action_names,
            "key_bindings": self.engine.key_bindings, "keys": sorted(self.keymap.keys),
            "frame_size": self.engine.frame_size, "native_size": parse_native_size(self.metadata.get("native_size")),
            "steps": status.steps, "step_counts": list(STEP_COUNTS), "sampler": status.sampler,
            "fusion": status.fusion.value if status.fusion else None, "commands": commands,
            "view": self.core.view.value, "views": [{"value": v.value, "label": v.label} for v in View],
            "fps": self.server.fps, "stages": STAGE_TERMS, "seed": self.seed,
        }

    def handle(self, msg: Message) -> None:
        """Apply a valid message: held keys now, the rest queued for the core (engine calls happen
        in the tick, in the model thread)."""
        self.last_message = time.monotonic()
        core = self.core
        if msg.type == "keys":
            self.held = msg.held
        elif msg.type == "reset":
            core.post(core.request_reset)
        elif msg.type == "resync":
            core.post(core.request_resync)
        elif msg.type == "steps":
            core.post(core.set_steps, int(msg.value))
        elif msg.type == "fusion":
            core.post(core.set_fusion, msg.value)
        elif msg.type == "view":
            core.post(core.set_view, msg.value)
        elif msg.type == "record":
            core.post(core.set_recording, bool(msg.value))
        elif msg.type == "command":
            core.post(core.command, PAGE_COMMAND_NAMES[msg.value])

    def tick(self, action: int) -> tuple[bytes, dict[str, float], str | None]:
        """One tick in the model thread: the queued settings, the core's step, the frame message."""
        t0 = time.perf_counter()
        core = self.core
        first = not self.started
        if first:  # the first tick resets the game at this connection's seed
            self.started = True
            event: int | None = EVENT_RESET
            result = core.start()
        else:
            core.run_posted()
            event = core.next_event()
            result = core.step(event, action) if event is not None else core.last
        stages = dict(result.stages_ms) if event is not None else {}
        if event is not None and event != EVENT_STEP:  # a reset or re-sync encodes the real frames into the context
            stages["encode"] = (time.perf_counter() - t0) * 1000 - sum(stages.values())
        t_out = time.perf_counter()
        status = self.engine.status()
        frames = [np.asarray(p) for p, _ in core.panels(result, status)]
        if any(f.shape != frames[0].shape for f in frames):
            frames = [frames[-1]]
        self.frames += 1
        message = frame_message(self.frames, frames)
        stages["output"] = (time.perf_counter() - t_out) * 1000
        if event is not None and not first:  # the core's start is no stepped frame
            core.finish(result, event, action, stages, None, time.perf_counter(), None)
        stages["total"] = (time.perf_counter() - t0) * 1000
        note, core.record_note = core.record_note, None
        return message, stages, note

    def stats(self) -> dict[str, Any]:
        now = time.perf_counter()
        marks = [t for t in self.fps_marks if now - t <= 2.0]
        self.fps_marks = marks
        fps = (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 and marks[-1] > marks[0] else 0.0
        stages = {k: v / max(self.stage_n, 1) for k, v in self.stage_sum.items()}
        self.stage_sum, self.stage_n = {}, 0
        status = self.engine.status()
        return {"type": "stats", "server_fps": round(fps, 2), "stages_ms": {k: round(v, 3) for k, v in stages.items()},
                "steps": status.steps, "sampler": status.sampler, "fusion": status.fusion.value if status.fusion else None,
                "view": self.core.view.value, "frames": self.frames, "dropped": self.dropped, "recording": self.core.recording,
                "weights": status.fusion_weights, "settings": self.core.settings_shown(status)}


async def _ticker(conn: Connection) -> None:
    """Run :func:`_tick_loop`; an engine error ends this connection (one line to the client)."""
    try:
        await _tick_loop(conn)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # noqa: BLE001 -- the story goes to the server's stderr, never to the client
        traceback.print_exc(file=sys.stderr)
        if not conn.ws.closed:
            await conn.ws.close(code=CLOSE_ERROR, message=b"server error")


async def _tick_loop(conn: Connection) -> None:
    """Step the engine at the tick rate; put each frame in the mailbox (dropping an unsent one)."""
    loop = asyncio.get_running_loop()
    period = 1.0 / conn.server.fps
    next_t = loop.time()
    last_stats = 0.0
    idle = conn.server.cfg.idle_timeout
    while not conn.ws.closed:
        if idle > 0 and time.monotonic() - conn.last_message > idle:
            await conn.ws.close(code=CLOSE_IDLE, message=b"idle timeout")
            return
        action = conn.keymap.action(conn.held)
        message, stages, note = await loop.run_in_executor(conn.server.model_thread, conn.tick, action)
        if conn.mailbox is not None:
            conn.dropped += 1
        conn.mailbox = message
        conn.mail.set()
        conn.fps_marks.append(time.perf_counter())
        for k, v in stages.items():
            conn.stage_sum[k] = conn.stage_sum.get(k, 0.0) + v
        conn.stage_n += 1
        if note:
            await conn.ws.send_str(json.dumps({"type": "recording", "message": note, "active": conn.core.recording}))
        if loop.time() - last_stats >= STATS_EVERY_S:
            last_stats = loop.time()
            conn.statsbox = json.dumps(conn.stats())
        next_t += period
        delay = next_t - loop.time()
        if delay < -period:  # fell behind (slow steps): no burst of catch-up frames
            next_t, delay = loop.time(), 0.0
        await asyncio.sleep(max(delay, 0.0))


async def _sender(conn: Connection) -> None:
    """Send the newest frame; while a send is in progress new frames replace the unsent one."""
    while not conn.ws.closed:
        await conn.mail.wait()
        conn.mail.clear()
        message, conn.mailbox = conn.mailbox, None
        stats, conn.statsbox = conn.statsbox, None
        if stats is not None:
            await conn.ws.send_str(stats)
        if message is not None:
            await conn.ws.send_bytes(message)
            conn.sent += 1


def make_app(cfg: ServeSettings) -> Any:
    """The aiohttp application: ``/`` (the page), ``/app.js``, ``/ws`` (the game)."""
    from aiohttp import WSMsgType

    server = Server(cfg)
    app = web.Application(client_max_size=MAX_MESSAGE * 4)
    app[SERVER] = server
    web_dir = resources.files("worldgame") / "web"

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=(web_dir / "index.html").read_text(encoding="utf-8"), content_type="text/html",
                            headers=_NO_SNIFF)

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=(web_dir / "app.js").read_text(encoding="utf-8"), content_type="application/javascript",
                            headers=_NO_SNIFF)

    async def socket(request: web.Request) -> web.StreamResponse:
        if not origin_ok(request.headers.get("Origin"), request.headers.get("Host")):
            return web.Response(status=403, text="forbidden: this page's origin may not open the game socket")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30.0, compress=False)
        await ws.prepare(request)
        if server.active >= cfg.max_clients:
            await ws.send_str(json.dumps({"type": "busy", "message": f"busy: all {cfg.max_clients} dreams are in use, try again later"}))
            await ws.close(code=CLOSE_BUSY, message=b"busy")
            return ws
        server.active += 1
        conn = None
        tasks: list[asyncio.Task] = []
        try:
            seed = server.seeds.randrange(1 << 24)
            try:
                engine, metadata = await server.engine_for(seed)
            except Exception as e:  # noqa: BLE001 -- one line to the client, the story to stderr
                traceback.print_exc(file=sys.stderr)
                await ws.send_str(json.dumps({"type": "error", "message": "the server could not start a dream"}))
                await ws.close(code=CLOSE_ERROR, message=b"server error")
                server.log(f"dream failed to start: {type(e).__name__}")
                return ws
            conn = Connection(server, ws, engine, metadata, seed)
            server.connections.add(conn)
            server.log(f"player connected (seed {seed}; {server.active}/{cfg.max_clients} dreams)", flush=True)
            await ws.send_str(json.dumps(conn.hello()))
            tasks = [asyncio.create_task(_ticker(conn)), asyncio.create_task(_sender(conn))]
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        conn.handle(parse_message(msg.data, conn.keymap.keys))
                    except BadMessage as e:
                        await ws.close(code=CLOSE_INVALID, message=str(e).encode()[:120])
                        break
                elif msg.type == WSMsgType.BINARY:
                    await ws.close(code=CLOSE_INVALID, message=b"binary messages are not accepted")
                    break
                else:  # ERROR (oversized, bad frame): aiohttp has closed it with its own code
                    break
        except Exception:  # noqa: BLE001 -- never a traceback to a client; the server keeps serving
            traceback.print_exc(file=sys.stderr)
            if not ws.closed:
                await ws.close(code=CLOSE_ERROR, message=b"server error")
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):  # a socket closed mid-send
                    await t
            if conn is not None:
                server.connections.discard(conn)
                if conn.core.recording:
                    await asyncio.get_running_loop().run_in_executor(server.model_thread, conn.core.stop_recording)
            server.active -= 1
            if conn is not None:
                server.log(f"player left after {conn.frames} frames ({server.active}/{cfg.max_clients} dreams)", flush=True)
        return ws

    app.router.add_get("/", page)
    app.router.add_get("/app.js", script)
    app.router.add_get("/ws", socket)

    async def prepare(app: web.Application) -> None:  # before the port opens: the first player's dream is ready
        await asyncio.get_running_loop().run_in_executor(None, server.prepare)

    async def shutdown(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, server.close)

    app.on_startup.append(prepare)
    app.on_cleanup.append(shutdown)
    return app


SERVER = web.AppKey("server", Server)  # the app's shared state (tests read the connections)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def run(cfg: ServeSettings) -> dict[str, Any]:
    """Entry point of ``worldgame serve`` (hydra config: conf/serve.yaml)."""
    from worldgame.engine.factory import exit_quickly, game_of
    from worldgame.errors import WorldgameError

    if cfg.checkpoint and not Path(cfg.checkpoint).is_dir():
        raise WorldgameError(f"checkpoint={cfg.checkpoint}: no such folder")
    game_of(cfg)  # a bad checkpoint's metadata fails here, before the port opens
    exit_quickly()
    try:
        return asyncio.run(_serve(cfg))
    except KeyboardInterrupt:  # Ctrl+C: the open dreams were closed (recordings saved) on the way out
        print("worldgame serve: stopped", flush=True)
        return {"host": cfg.host, "port": cfg.port}
    except OSError as e:  # the port is taken, the address is not this machine's ...
        raise WorldgameError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from e


async def _serve(cfg: ServeSettings) -> dict[str, Any]:
    runner = web.AppRunner(make_app(cfg))
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port)
        await site.start()
        host, port = cfg.host, site._server.sockets[0].getsockname()[1]  # the real port (port=0: any free one)
        shown = f"[{host}]" if ":" in host else host
        print(f"worldgame serve: open http://{shown}:{port}/ (up to {cfg.max_clients} players; Ctrl+C stops)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print("note: serving beyond this machine: anyone who can reach this port can play", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return {"host": cfg.host, "port": cfg.port}
