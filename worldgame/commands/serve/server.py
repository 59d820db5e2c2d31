"""The server: the state every dream shares (settings, caps, the one loaded model and the one thread
all model work runs in), fairness between dreams, the aiohttp app (page, script, socket, admission
of a new player within the caps) and the entry point of ``worldgame serve``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from worldgame.commands.serve.connection import Connection, refuse, serve_connection
from worldgame.commands.serve.guard import Bucket, CappedSite, QuietLog, host_guard, origin_ok, quiet_logs
from worldgame.commands.serve.protocol import CLOSE_BUSY, CLOSE_ERROR, CLOSE_GOING_AWAY, MAX_MESSAGE
from worldgame.errors import WorldgameError
from worldgame.settings import ServeSettings


class Server:
    """The shared state: settings, the caps, the one loaded model, and the one thread all model
    work runs in (the event loop stays free to send and receive; dreams take turns, a few ms each).

    The model is loaded, prepared (ONNX or traced) and warmed once, before the address is printed
    (:meth:`prepare`); each player's engine shares its prepared sampler (ModelEngine ``share``), so
    a connection costs a few ms of the model thread and no model load, however many come and go.
    Turns are fair (:meth:`interval`): when the dreams together want more of the model thread than
    it has, the heaviest ones tick slower, not the light ones."""

    SHARE = 0.9  # of the model thread's time the dreams may plan to use together
    FLOOR = 0.1  # of the model thread's time the heavier dreams share at least
    STARTS_PER_S, STARTS_BURST, START_WAIT_S = 10.0, 20.0, 5.0  # new dreams: a churning client waits its turn

    def __init__(self, cfg: ServeSettings) -> None:
        self.cfg = cfg
        self.fps = cfg.fps  # None: the game's own tick rate, known once the model is loaded
        self.active = 0
        self.seeds = random.Random(cfg.seed)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worldgame-dream")
        self.proto: Any = None  # the first engine: the model and the prepared sampler every dream shares
        self.metadata: dict[str, Any] = {}
        self.connections: set[Connection] = set()
        self.starts = Bucket(self.STARTS_PER_S, self.STARTS_BURST)
        self.record_files = self.record_bytes = 0  # this run's recordings, all clients
        self.stopping = False
        self.log = QuietLog("stdout", burst=20)  # player joined/left: a churning client makes many
        self.errors = QuietLog("stderr")

    def prepare(self) -> None:
        """Load and warm the model now (blocking): the first player's first frame needs no load,
        and a checkpoint that cannot load fails here, with its one line."""
        from worldgame.engine.factory import make_engine

        with contextlib.redirect_stdout(sys.stderr):  # "loading ...": stdout's first line stays the address
            engine, self.metadata = make_engine(self.cfg, 0)
        if self.fps is None:
            self.fps = float(self.metadata["tick_hz"])  # the checkpoint's game at its own speed (Atari 15 Hz)
        engine.reset(0)  # the VAE encoder's and the game's first calls are slow too
        self.proto = engine

    def make_engine(self, seed: int) -> Any:
        """A new dream's engine (in the model thread): the shared model and sampler, its own state."""
        from worldgame.engine.model_engine import ModelEngine

        cfg = self.cfg
        return ModelEngine(self.proto.model, steps=self.proto.steps, fusion=cfg.fusion, fusion_window=cfg.fusion_window,
                           fusion_base=cfg.fusion_base, seed=seed, share=self.proto)

    async def engine_for(self, seed: int) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, self.make_engine, seed)

    async def start_turn(self) -> bool:
        """Wait for a new dream's turn to start (False: none within START_WAIT_S): connections that
        come and go as fast as they can cost the model thread at most STARTS_PER_S starts."""
        deadline = time.monotonic() + self.START_WAIT_S
        while (wait := self.starts.wait_s()) > 0:
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)
        return self.starts.take()

    def interval(self, conn: Connection) -> float:
        """Seconds between ``conn``'s ticks: the tick period, or longer where the dreams together
        want more than SHARE of the model thread. Then the dreams asking the least work (protocol.work)
        are served in full, and the heavier ones share what is left (at least FLOOR of it): a client
        asking for more work than the others slows itself, not them. Dreams asking the same work
        are equals (the work asked, not the time measured, so a busy machine's noise cannot split them)."""
        period = 1.0 / (self.fps or 30.0)
        conns = sorted(self.connections, key=lambda c: c.work)
        left = self.SHARE * period
        if len(conns) < 2 or sum(c.cost for c in conns) <= left:
            return period
        i = 0
        while i < len(conns):  # serve the lightest groups of equals in full while they fit
            group = [c for c in conns[i:] if c.work == conns[i].work]
            if sum(c.cost for c in group) > left:
                break
            left, i = left - sum(c.cost for c in group), i + len(group)
        if i == len(conns) or conn.work < conns[i].work:
            return period
        if i == 0:  # no lighter dream to keep room for: the equals share all of it (as they would in turn)
            left = period
        allowed = max(left, self.FLOOR * period) / (len(conns) - i)
        return period * max(1.0, conn.cost / allowed)

    def record_refusal(self, conn: Connection) -> str | None:
        """Why ``conn`` may not start a recording now (None: it may)."""
        cfg, mb = self.cfg, 1 << 20
        if conn.record_files >= cfg.record_per_client:
            return f"this server allows {cfg.record_per_client} recordings per player"
        if self.record_files >= cfg.record_files:
            return f"this server's {cfg.record_files} recordings are made"
        if conn.record_bytes >= cfg.record_client_mb * mb:
            return f"this server allows {cfg.record_client_mb:g} MB of recordings per player"
        if self.record_bytes >= cfg.record_mb * mb:
            return f"this server's {cfg.record_mb:g} MB of recordings are used"
        return None

    async def finish(self) -> None:
        """Stop every dream (their tick loops end) and save every open recording, in the model
        thread after the tick in progress: Ctrl+C and SIGTERM lose no recording."""
        self.stopping = True
        conns = list(self.connections)
        if not conns:
            return
        await asyncio.get_running_loop().run_in_executor(self.model_thread, _stop_recordings, conns)
        closing = [c.ws.close(code=CLOSE_GOING_AWAY, message=b"server stopping") for c in conns]
        with contextlib.suppress(asyncio.TimeoutError):  # a client that does not answer the close is cut off
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 1.0)

    def close(self) -> None:
        self.model_thread.shutdown(wait=False, cancel_futures=True)


def _stop_recordings(conns: list[Connection]) -> None:
    for conn in conns:
        conn.stop_recording()


SERVER = web.AppKey("server", Server)  # the app's shared state (tests read the connections)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def make_app(cfg: ServeSettings) -> Any:
    """The aiohttp application: ``/`` (the page), ``/app.js``, ``/ws`` (the game)."""
    server = Server(cfg)
    app = web.Application(client_max_size=MAX_MESSAGE * 4, middlewares=[host_guard(cfg)])
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
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30.0, compress=False, timeout=1.0)
        await ws.prepare(request)
        try:
            await _play(server, ws, request.transport)
        except ConnectionError:  # the client left mid-send (before its first message, say): nothing to tell
            pass
        return ws

    app.router.add_get("/", page)
    app.router.add_get("/app.js", script)
    app.router.add_get("/ws", socket)

    async def prepare(app: web.Application) -> None:  # before the port opens: the model is loaded and warm
        await asyncio.get_running_loop().run_in_executor(None, server.prepare)

    async def stop_dreams(app: web.Application) -> None:  # recordings are saved before the sockets close
        await server.finish()

    async def shutdown(app: web.Application) -> None:
        server.close()

    app.on_startup.append(prepare)
    app.on_shutdown.append(stop_dreams)
    app.on_cleanup.append(shutdown)
    return app


async def _busy(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_str(json.dumps({"type": "busy", "message": message}))
    await ws.close(code=CLOSE_BUSY, message=b"busy")


async def _play(server: Server, ws: web.WebSocketResponse, transport: Any) -> None:
    """One player's dream on ``ws``, within the caps."""
    cfg = server.cfg
    if server.active >= cfg.max_clients or server.stopping:
        await _busy(ws, f"busy: all {cfg.max_clients} dreams are in use, try again later")
        return
    server.active += 1
    conn = None
    try:
        if not await server.start_turn():
            await _busy(ws, "busy: too many new players at once, try again in a moment")
            return
        if ws.closed:  # it left while waiting
            return
        seed = server.seeds.randrange(1 << 24)
        try:
            engine = await server.engine_for(seed)
        except Exception:  # noqa: BLE001 -- one line to the client, the story to stderr
            server.errors.error("worldgame serve: a dream failed to start:")
            await ws.send_str(json.dumps({"type": "error", "message": "the server could not start a dream"}))
            await ws.close(code=CLOSE_ERROR, message=b"server error")
            return
        conn = Connection(server, ws, engine, seed)
        conn.transport = transport
        server.connections.add(conn)
        server.log(f"player connected (seed {seed}; {server.active}/{cfg.max_clients} dreams)")
        await ws.send_str(json.dumps(conn.hello()))
        await serve_connection(conn)
    except ConnectionError:
        raise
    except Exception:  # noqa: BLE001 -- never a traceback to a client; the server keeps serving
        server.errors.error("worldgame serve: a connection failed:")
        if not ws.closed:
            await ws.close(code=CLOSE_ERROR, message=b"server error")
    finally:
        if conn is not None:
            server.connections.discard(conn)
            if conn.core.recording:
                await asyncio.get_running_loop().run_in_executor(server.model_thread, conn.stop_recording)
        server.active -= 1
        if conn is not None:
            server.log(f"player left after {conn.frames} frames ({server.active}/{cfg.max_clients} dreams)")
            if conn.refusal is not None:  # its dream's place is free while the close handshake waits
                await refuse(conn, conn.refusal)


async def start(cfg: ServeSettings) -> tuple[web.AppRunner, CappedSite]:
    """Load the model, then listen: the runner (``cleanup()`` stops it) and the site (its port).
    ``header_timeout`` is aiohttp's keep-alive timeout, which also runs from a connection's start
    until its first request is whole: a client trickling its headers (slowloris) is closed then."""
    app = make_app(cfg)
    quiet_logs(app[SERVER].errors)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=cfg.header_timeout, shutdown_timeout=0.5)
    await runner.setup()
    site = CappedSite(runner, cfg.host, cfg.port, cfg.max_connections)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def run(cfg: ServeSettings) -> dict[str, Any]:
    """Entry point of ``worldgame serve`` (hydra config: conf/serve.yaml)."""
    from worldgame.engine.factory import exit_quickly, game_of

    if cfg.checkpoint and not Path(cfg.checkpoint).is_dir():
        raise WorldgameError(f"checkpoint={cfg.checkpoint}: no such folder")
    game_of(cfg)  # a bad checkpoint's metadata fails here, before the port opens
    exit_quickly()
    try:
        asyncio.run(_serve(cfg))
    except OSError as e:  # the port is taken, the address is not this machine's ...
        raise WorldgameError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from e
    print("worldgame serve: stopped", flush=True)
    return {"host": cfg.host, "port": cfg.port}


async def _serve(cfg: ServeSettings) -> None:
    """Serve until Ctrl+C or SIGTERM; then save the open recordings, close the sockets and return
    (within about a second: no handler is waited for longer than the runner's shutdown_timeout)."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises instead
            loop.add_signal_handler(sig, stop.set)
    runner, site = await start(cfg)
    try:
        host, port = cfg.host, site.bound_port  # the real port (port=0: any free one)
        shown = f"[{host}]" if ":" in host else host
        print(f"worldgame serve: open http://{shown}:{port}/ (up to {cfg.max_clients} players; Ctrl+C stops)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print("note: serving beyond this machine: anyone who can reach this port can play", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()  # on_shutdown saves the recordings; handlers get shutdown_timeout, then are cancelled
