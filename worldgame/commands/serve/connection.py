"""One player: a connection's own dream (its tick core on the shared model), the tick loop that steps
it at the rate the server allows, the sender with its one-slot mailbox (a slow client misses frames
instead of queueing them), the message reader, and the recording quotas within the server's caps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from worldgame.commands.serve.guard import Bucket, QuietLog
from worldgame.commands.serve.protocol import (
    CLOSE_ERROR,
    CLOSE_IDLE,
    CLOSE_INVALID,
    PAGE_COMMAND_NAMES,
    STATS_EVERY_S,
    BadMessage,
    Message,
    frame_message,
    hello_message,
    parse_message,
    stats_message,
    work,
)
from worldgame.data.episode import EVENT_RESET, EVENT_STEP
from worldgame.engine.keys import KeyMap
from worldgame.engine.views import View
from worldgame.errors import WorldgameError
from worldgame.settings import ServeSettings

# ticks may run this many periods late before the schedule restarts: a tick waiting behind another
# dream's (up to max_work) is late by that tick's time, and catching up keeps its frame rate
CATCH_UP = 2


class Shared(Protocol):
    """What a connection reads and books on its server (server.Server, which imports this file)."""

    cfg: ServeSettings
    fps: float | None
    metadata: dict[str, Any]
    model_thread: ThreadPoolExecutor
    errors: QuietLog
    stopping: bool
    record_files: int
    record_bytes: int

    def record_refusal(self, conn: Connection) -> str | None: ...

    def interval(self, conn: Connection) -> float: ...


class Connection:
    """One client: its tick core (tick_core.TickCore: engine, settings, recorder), its tick task,
    a one-slot mailbox of the newest frame, its message bucket and its recording allowance."""

    def __init__(self, server: Shared, ws: Any, engine: Any, seed: int) -> None:
        from worldgame.engine.session import SessionRecorder
        from worldgame.engine.tick_core import TickCore

        cfg = server.cfg
        self.server, self.ws, self.engine, self.seed = server, ws, engine, seed
        self.transport: Any = None  # the socket's (reading stops when a flood is refused)
        self.refusal: str | None = None  # why the client is being closed (1008)
        self.metadata = server.metadata
        self.core = TickCore(engine, seed, cfg.view, SessionRecorder(cfg.sessions, server.metadata), agent=cfg.agent,
                             game_over_ticks=round(cfg.game_over_s * (server.fps or 30.0)))
        self.keymap = KeyMap(engine.action_names, engine.key_bindings)
        self.held: list[str] = []
        self.started = False
        self.mailbox: bytes | None = None  # the newest frame not yet sent
        self.statsbox: str | None = None  # the newest stats not yet sent
        self.mail = asyncio.Event()
        self.frames = self.sent = self.dropped = 0
        self.last_message = time.monotonic()
        self.messages = Bucket(cfg.max_messages, 2 * cfg.max_messages)
        self.asked = (engine.steps, View.parse(cfg.view))  # the steps and view asked for (max_work; steps: the setting's or the checkpoint's)
        self.status = engine.status()  # made in the model thread by each tick
        self.captions: list[str] = []  # the panels' captions of the newest frame (the page draws them)
        self.cost = 0.0  # seconds of the model thread a tick takes (moving average)
        self.record_files = self.record_bytes = self.record_rows = 0
        self.stage_sum: dict[str, float] = {}
        self.stage_n = 0
        self.fps_marks: list[float] = []

    @property
    def work(self) -> int:
        """The work this dream's frames take now (max_work's measure)."""
        return work(self.status.steps or 1, self.core.view)

    def hello(self) -> dict[str, Any]:
        return hello_message(self.engine, self.status, view=self.core.view, keys=self.keymap.keys,
                             metadata=self.metadata, fps=self.server.fps, seed=self.seed,
                             max_work=self.server.cfg.max_work)

    def handle(self, msg: Message) -> str | None:
        """Apply a valid message: held keys now, the rest queued for the core (engine calls happen
        in the tick, in the model thread). Returns a refusal to tell the client, or None."""
        self.last_message = time.monotonic()
        core = self.core
        if msg.type in ("steps", "view"):
            steps, view = self.asked
            steps, view = (int(msg.value), view) if msg.type == "steps" else (steps, View.parse(msg.value))
            if work(steps, view) > self.server.cfg.max_work:
                return (f"refused: {steps} steps in the {view.label} view is {work(steps, view)} units of work a frame; "
                        f"this server allows {self.server.cfg.max_work}")
            self.asked = (steps, view)
        if msg.type == "keys":
            if set(msg.held) - set(self.held):  # a key went down: it ends the GAME OVER screen
                core.post(core.any_key)
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
            core.post(self.set_recording, bool(msg.value))
        elif msg.type == "command":
            core.post(core.command, PAGE_COMMAND_NAMES[msg.value])
        return None

    # --- recording (in the model thread), within the server's caps --------------------------------
    def set_recording(self, on: bool) -> None:
        if not on:
            self.stop_recording()
            return
        if self.core.recording or self.core.last is None:
            return
        refusal = self.server.record_refusal(self)
        if refusal is not None:
            self.core.record_note = f"not recording: {refusal}"
            return
        try:
            self.core.set_recording(True)
        except (OSError, WorldgameError):  # an unwritable sessions folder: this player is told, the dream goes on
            self.core.record_note = "not recording: the server cannot write its sessions folder"
            return
        self.record_files += 1
        self.server.record_files += 1
        self.record_rows = 0
        self.core.record_note = f"recording to {self._name()}"

    def stop_recording(self, why: str = "") -> None:
        """Close the recording (the file is complete and readable) and tell the client its name."""
        if not self.core.recording:
            return
        name = self._name()
        try:
            self.core.stop_recording()
            self.core.record_note = f"saved {name}{why}"
        except (OSError, WorldgameError):
            self.core.recorder.writer = None
            self.core.record_note = f"recording stopped: the server could not finish writing {name}"

    def _name(self) -> str:
        """The recording's name as the client sees it: relative to the sessions folder."""
        path = self.core.recorder.path
        return path.name if path is not None else "?"

    def _count_recorded(self, frame_bytes: int) -> None:
        """Book one recorded row; at a cap the recording is saved and the client told why."""
        self.record_rows += 1
        self.record_bytes += frame_bytes
        self.server.record_bytes += frame_bytes
        cfg, mb = self.server.cfg, 1 << 20
        if self.record_rows >= cfg.record_seconds * (self.server.fps or 30.0):
            self.stop_recording(f" (the longest recording here is {cfg.record_seconds:g} s)")
        elif self.record_bytes >= cfg.record_client_mb * mb or self.server.record_bytes >= cfg.record_mb * mb:
            self.stop_recording(" (the recording space allowed is used)")

    # --- the tick ---------------------------------------------------------------------------------
    def tick(self, action: int) -> tuple[bytes, dict[str, float], str | None]:
        """One tick in the model thread: the queued settings, the core's step, the frame message.
        Everything a player can change (steps, view, context noise ...) is this dream's own state;
        the model and the prepared sampler are shared read-only."""
        t0 = time.perf_counter()
        core = self.core
        first = not self.started
        if first:  # the first tick resets the game at this connection's seed
            self.started = True
            event: int | None = EVENT_RESET
            result = core.start()
        else:
            core.run_posted()
            event, action, result = core.advance(action)  # the agent's action while it plays: the one recorded
        stages = dict(result.stages_ms) if event is not None else {}
        if event is not None and event != EVENT_STEP:  # a reset or re-sync encodes the real frames into the context
            stages["encode"] = (time.perf_counter() - t0) * 1000 - sum(stages.values())
        t_out = time.perf_counter()
        self.status = status = self.engine.status()
        panels = core.panels(result, status)
        frames = [np.asarray(p) for p, _ in panels]
        self.captions = [str(c or "") for _, c in panels]  # "real" / "model" ...: the page labels its panels
        if any(f.shape != frames[0].shape for f in frames):
            frames, self.captions = [frames[-1]], self.captions[-1:]
        self.frames += 1
        message = frame_message(self.frames, frames)
        stages["output"] = (time.perf_counter() - t_out) * 1000
        if event is not None and not first:  # the core's start is no stepped frame
            self._finish(result, event, action, stages)
        stages["total"] = (time.perf_counter() - t0) * 1000
        note, core.record_note = core.record_note, None
        return message, stages, note

    def _finish(self, result: Any, event: int, action: int, stages: dict[str, float]) -> None:
        """The core's bookkeeping and the recording's row; a failed write ends the recording only."""
        recording = self.core.recording
        try:
            self.core.finish(result, event, action, stages, None, time.perf_counter(), None)
        except (OSError, WorldgameError):  # the disk filled up: what was written stays readable
            with contextlib.suppress(OSError, WorldgameError):
                self.core.recorder.stop()
            self.core.recorder.writer = None
            self.core.record_note = "recording stopped: the server could not write it"
            return
        if recording and self.core.recording:
            self._count_recorded(int(np.asarray(result.frame).nbytes))

    def stats(self) -> dict[str, Any]:
        now = time.perf_counter()
        marks = [t for t in self.fps_marks if now - t <= 2.0]
        self.fps_marks = marks
        fps = (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 and marks[-1] > marks[0] else 0.0
        stages = {k: v / max(self.stage_n, 1) for k, v in self.stage_sum.items()}
        self.stage_sum, self.stage_n = {}, 0
        return stats_message(self.core, self.status, server_fps=fps, stages_ms=stages, frames=self.frames,
                             dropped=self.dropped, captions=self.captions, now=now)


async def serve_connection(conn: Connection) -> None:
    """Run the tick and send tasks while reading the client's messages (checked, rate-limited)."""
    from aiohttp import WSMsgType

    ws = conn.ws
    tasks = [asyncio.create_task(_ticker(conn)), asyncio.create_task(_sender(conn))]
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if not conn.messages.take():
                    conn.refusal = "too many messages"
                    break
                try:
                    refusal = conn.handle(parse_message(msg.data, conn.keymap.keys))
                except BadMessage as e:
                    conn.refusal = str(e)
                    break
                if refusal is not None:
                    await ws.send_str(json.dumps({"type": "refused", "message": refusal}))
            elif msg.type == WSMsgType.BINARY:
                conn.refusal = "binary messages are not accepted"
                break
            else:  # ERROR (oversized, bad frame): aiohttp has closed it with its own code
                break
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a socket closed mid-send
                await t


async def refuse(conn: Connection, reason: str) -> None:
    """Close ``conn`` with 1008 and ``reason``, reading nothing more from it: a flooding client's
    messages are not parsed while its close handshake waits (the socket buffers fill, it stalls)."""
    with contextlib.suppress(AttributeError, RuntimeError):
        conn.transport.pause_reading()
    await conn.ws.close(code=CLOSE_INVALID, message=reason.encode()[:120])


async def _ticker(conn: Connection) -> None:
    """Run :func:`_tick_loop`; an engine error ends this connection (one line to the client)."""
    try:
        await _tick_loop(conn)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # noqa: BLE001 -- the story goes to the server's stderr, never to the client
        conn.server.errors.error("worldgame serve: a dream failed:")
        if not conn.ws.closed:
            await conn.ws.close(code=CLOSE_ERROR, message=b"server error")


async def _tick_loop(conn: Connection) -> None:
    """Step the engine at the tick rate (slower where the server's ``interval`` says so, server.py);
    put each frame in the mailbox (dropping an unsent one)."""
    loop = asyncio.get_running_loop()
    server = conn.server
    next_t = loop.time()
    last_stats = 0.0
    idle = server.cfg.idle_timeout
    while not conn.ws.closed and not server.stopping:
        if idle > 0 and time.monotonic() - conn.last_message > idle:
            await conn.ws.close(code=CLOSE_IDLE, message=b"idle timeout")
            return
        action = conn.keymap.action(conn.held)
        message, stages, note = await loop.run_in_executor(server.model_thread, conn.tick, action)
        # a slow average: one slow tick (another process took the CPU) must not throttle a light dream
        conn.cost = stages["total"] / 1000 if conn.frames <= 1 else 0.9 * conn.cost + 0.1 * stages["total"] / 1000
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
        period = server.interval(conn)
        next_t += period
        delay = next_t - loop.time()
        if delay < -CATCH_UP * period:  # far behind (slow steps): no burst of catch-up frames
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
