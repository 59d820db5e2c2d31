"""`worldgame serve`: the game in a web page. One page, one WebSocket; each connection gets its own
dream (its own engine state and seed) on the one model loaded at start, stepped at the tick rate.

Protocol (``worldgame/web/app.js`` is the client):

* server → client, text: JSON ``{"type": "hello", ...}`` once (game, actions, key bindings, the
  allowed key names, frame size, native size, settings, ``max_work``), ``{"type": "stats", ...}`` a
  few times a second (per-stage ms in the source pipeline's terms, server FPS, settings, recording,
  who plays -- ``player`` "agent"/"you", null without an agent --, ``game_over``: the GAME OVER
  box's lines while the last frame is held, and the HUD's ``notice``),
  ``{"type": "busy"|"error"|"refused"|"recording", "message": ...}`` (``refused``: a request over
  ``max_work``, the dream goes on; ``recording`` names the file relative to the sessions folder).
* server → client, binary: one frame: ``b"WGF1"``, uint32 frame number, uint16 panels, uint16 height,
  uint16 width (big-endian), then ``panels`` RGB images of height×width×3 bytes, left to right.
* client → server, text only, JSON objects of at most :data:`MAX_MESSAGE` bytes, checked by
  :func:`parse_message`, at most ``max_messages`` a second; anything else closes that connection
  (code 1008 and the reason), and nothing more is read from it.

Safety: binds 127.0.0.1 unless told; a request whose Host is not this server (localhost, a loopback
address or ``host``, with this port) is refused (403: DNS rebinding), then a WebSocket whose Origin
is not that Host; at most ``max_connections`` TCP connections (one more is answered 503 and
closed) and ``header_timeout`` s to send a request's headers (slowloris); the checkpoint is the
server's and loaded once, before the address is printed: a connection costs no model load, and new
dreams start at most 10 a second (churn cannot starve the dreams in play); at most ``max_clients``
dreams (others get "busy" and close code 1013); a client may ask at most ``max_work`` (steps x
panels) of a frame, and when the dreams together want more of the one model thread than it has,
the heavier ones tick slower, not the lighter ones (:meth:`Server.interval`); recordings are capped
in number, size and length per client and per server (``record_*``), and an unwritable sessions
folder is a one-line refusal to that client; a connection with no message for ``idle_timeout`` s
is closed; frames go through a one-slot mailbox, so a slow client misses frames instead of
queueing them; errors reach the client as one line, never a traceback (those go to the server's
stderr, at most 10 per 10 s, as do asyncio's and aiohttp's own); a client leaving early is no
error. Ctrl+C and SIGTERM save the open recordings, close the sockets (1001) and exit in about a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import struct
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
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
from worldgame.errors import WorldgameError
from worldgame.settings import STEP_COUNTS, ServeSettings

MAX_MESSAGE = 1024  # bytes of one client message
MAX_HELD = 8  # keys held at once in a "keys" message
PAGE_COMMAND_NAMES = {c.wire: c for c in PAGE_COMMANDS}
FRAME_MAGIC = b"WGF1"
HEADER = struct.Struct(">4sIHHH")
STATS_EVERY_S = 0.25
# the source's pipeline terms for the engine's stage names
STAGE_TERMS = {"input": "input buffer", "agent": "agent", "encode": "VAE encode", "denoise": "LCM denoise",
               "fusion": "temporal fusion", "decode": "VAE decode", "events": "event head", "output": "output"}
CLOSE_INVALID, CLOSE_BUSY, CLOSE_IDLE, CLOSE_ERROR, CLOSE_GOING_AWAY = 1008, 1013, 1000, 1011, 1001
# ticks may run this many periods late before the schedule restarts: a tick waiting behind another
# dream's (up to max_work) is late by that tick's time, and catching up keeps its frame rate
CATCH_UP = 2


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


class QuietLog:
    """Server-side lines that cannot flood the console: at most ``burst`` lines per ``window_s``,
    then one line saying how many were left out (a hostile client can make errors at line rate)."""

    def __init__(self, stream: str = "stderr", burst: int = 10, window_s: float = 10.0) -> None:
        self.stream, self.burst, self.window_s = stream, burst, window_s
        self.start, self.count, self.left_out = time.monotonic(), 0, 0

    def allow(self) -> bool:
        """Count one line; False once this window's lines are spent."""
        now = time.monotonic()
        if now - self.start > self.window_s:
            if self.left_out:
                self._write(f"worldgame serve: {self.left_out} more such lines left out in {self.window_s:g} s")
            self.start, self.count, self.left_out = now, 0, 0
        self.count += 1
        if self.count > self.burst:
            self.left_out += 1
        return self.count <= self.burst

    def __call__(self, text: str, **_: Any) -> None:
        if self.allow():
            self._write(text)

    def error(self, what: str) -> None:
        """``what`` and the traceback of the exception being handled (the story stays on the server)."""
        if self.allow():
            self._write(f"{what}\n{traceback.format_exc().rstrip()}")

    def _write(self, text: str) -> None:
        print(text, file=getattr(sys, self.stream), flush=True)  # looked up now: tests capture it


class _QuietFilter(logging.Filter):
    def __init__(self, log: QuietLog) -> None:
        super().__init__()
        self.log = log

    def filter(self, record: logging.LogRecord) -> bool:
        return self.log.allow()


class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.t = burst, time.monotonic()

    def wait_s(self) -> float:
        """Seconds until a token is there (0: one is)."""
        now = time.monotonic()
        self.tokens, self.t = min(self.burst, self.tokens + (now - self.t) * self.rate), now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> bool:
        if self.wait_s() > 0:
            return False
        self.tokens -= 1
        return True


def work(steps: int, view: View) -> int:
    """A frame's model work as ``max_work`` counts it: sampling steps x panels decoded."""
    return steps * (steps if view is View.lcm_steps else 1 if view is View.stream else 2)


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
        self.context_noise = 0.0  # the checkpoint's: each dream starts with it
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
        self.proto, self.context_noise = engine, float(engine.model.context_noise)

    def make_engine(self, seed: int) -> Any:
        """A new dream's engine (in the model thread): the shared model and sampler, its own state."""
        from worldgame.engine.model_engine import ModelEngine

        cfg = self.cfg
        return ModelEngine(self.proto.model, steps=cfg.steps, fusion=cfg.fusion, fusion_window=cfg.fusion_window,
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
        want more than SHARE of the model thread. Then the dreams asking the least work (:func:`work`)
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


class Connection:
    """One client: its tick core (tick_core.TickCore: engine, settings, recorder), its tick task,
    a one-slot mailbox of the newest frame, its message bucket and its recording allowance."""

    def __init__(self, server: Server, ws: Any, engine: Any, seed: int) -> None:
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
        self.asked = (cfg.steps, View.parse(cfg.view))  # the steps and view asked for (max_work)
        self.context_noise = server.context_noise  # the model holds it: set for this dream's ticks only
        self.status = engine.status()  # made in the model thread by each tick
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
        status, live = self.status, self.engine.live
        commands = [{"value": c.wire, "label": c.value, "keys": keys_of(c)} for c in PAGE_COMMANDS if LIVE_CONTROLS.get(c) in live]
        return {
            "type": "hello", "game": self.metadata.get("game"), "actions": self.engine.action_names,
            "key_bindings": self.engine.key_bindings, "keys": sorted(self.keymap.keys),
            "frame_size": self.engine.frame_size, "native_size": parse_native_size(self.metadata.get("native_size")),
            "steps": status.steps, "step_counts": list(STEP_COUNTS), "sampler": status.sampler,
            "fusion": status.fusion.value if status.fusion else None, "commands": commands,
            "view": self.core.view.value, "views": [{"value": v.value, "label": v.label} for v in View],
            "fps": self.server.fps, "stages": STAGE_TERMS, "seed": self.seed, "max_work": self.server.cfg.max_work,
        }

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
        """One tick in the model thread: this dream's context noise on the shared model, the
        queued settings, the core's step, the frame message."""
        model = self.engine.model
        model.context_noise = self.context_noise
        try:
            return self._tick(action)
        finally:
            self.context_noise = model.context_noise  # a context-noise command may have changed it

    def _tick(self, action: int) -> tuple[bytes, dict[str, float], str | None]:
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
            if event is not None:
                action = core.action(event, action)  # the agent's while it plays: the one recorded
            result = core.step(event, action) if event is not None else core.last
        stages = dict(result.stages_ms) if event is not None else {}
        if event is not None and event != EVENT_STEP:  # a reset or re-sync encodes the real frames into the context
            stages["encode"] = (time.perf_counter() - t0) * 1000 - sum(stages.values())
        t_out = time.perf_counter()
        self.status = status = self.engine.status()
        frames = [np.asarray(p) for p, _ in core.panels(result, status)]
        if any(f.shape != frames[0].shape for f in frames):
            frames = [frames[-1]]
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
        status = self.status
        label, score = self.core.score_shown(status)
        return {"type": "stats", "server_fps": round(fps, 2), "score": None if score is None else f"{label} {score}", "stages_ms": {k: round(v, 3) for k, v in stages.items()},
                "steps": status.steps, "sampler": status.sampler, "fusion": status.fusion.value if status.fusion else None,
                "view": self.core.view.value, "frames": self.frames, "dropped": self.dropped, "recording": self.core.recording,
                "weights": status.fusion_weights, "settings": self.core.settings_shown(status),
                "player": self.core.player, "game_over": self.core.game_over_lines(status),
                "notice": self.core.notice if now < self.core.notice_until else None}


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
    """Step the engine at the tick rate (slower where :meth:`Server.interval` says so); put each
    frame in the mailbox (dropping an unsent one)."""
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


def host_ok(host: str | None, port: int, listen: str) -> bool:
    """The Host header names this server: ``localhost``, a loopback address or the configured host,
    with this port; any IP address where the server listens on every interface. A name other than
    these is refused, so a DNS-rebinding page (its own name, pointed at this machine) cannot talk
    to the server."""
    if not host:
        return False
    parts = urlsplit(f"//{host}")
    try:
        name, given = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is no number
        return False
    if given != port and not (given is None and port == 80):
        return False
    if name in ("localhost", listen.lower().strip("[]")):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or listen in ("0.0.0.0", "::")


@web.middleware
async def _host_check(request: web.Request, handler: Any) -> web.StreamResponse:
    """403 for a Host that is not this server, before anything else (the page and the socket)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if sockname else -1
    if not host_ok(request.headers.get("Host"), port, request.app[SERVER].cfg.host):
        return web.Response(status=403, text="forbidden: the Host header does not name this server")
    return await handler(request)


def make_app(cfg: ServeSettings) -> Any:
    """The aiohttp application: ``/`` (the page), ``/app.js``, ``/ws`` (the game)."""
    server = Server(cfg)
    app = web.Application(client_max_size=MAX_MESSAGE * 4, middlewares=[_host_check])
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
        await _serve_connection(conn)
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
                await _refuse(conn, conn.refusal)


async def _serve_connection(conn: Connection) -> None:
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


async def _refuse(conn: Connection, reason: str) -> None:
    """Close ``conn`` with 1008 and ``reason``, reading nothing more from it: a flooding client's
    messages are not parsed while its close handshake waits (the socket buffers fill, it stalls)."""
    with contextlib.suppress(AttributeError, RuntimeError):
        conn.transport.pause_reading()
    await conn.ws.close(code=CLOSE_INVALID, message=reason.encode()[:120])


SERVER = web.AppKey("server", Server)  # the app's shared state (tests read the connections)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class CappedSite(web.TCPSite):
    """A TCP site that holds at most ``cap`` connections (pages, sockets, requests still arriving):
    one more is answered 503 and closed at once, before it can take a file descriptor for long."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, cap: int) -> None:
        super().__init__(runner, host, port, backlog=min(128, 4 * cap))
        self.cap, self.open = cap, 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site, so the runner's cleanup stops it
        handlers = self._runner.server
        assert handlers is not None
        lost = handlers.connection_lost

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.open -= 1
            lost(handler, exc)

        handlers.connection_lost = connection_lost  # type: ignore[method-assign]

        def protocol() -> asyncio.BaseProtocol:
            if self.open >= self.cap:
                return _Refused()
            self.open += 1
            return handlers()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    @property
    def bound_port(self) -> int:
        return int(self._bound_port or 0)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with contextlib.suppress(OSError):
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")  # type: ignore[attr-defined]
        transport.close()


async def start(cfg: ServeSettings) -> tuple[web.AppRunner, CappedSite]:
    """Load the model, then listen: the runner (``cleanup()`` stops it) and the site (its port).
    ``header_timeout`` is aiohttp's keep-alive timeout, which also runs from a connection's start
    until its first request is whole: a client trickling its headers (slowloris) is closed then."""
    app = make_app(cfg)
    quiet = _QuietFilter(app[SERVER].errors)
    for name in ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.websocket", "aiohttp.internal"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _QuietFilter)]:  # an earlier server's (tests)
            logger.removeFilter(old)
        logger.addFilter(quiet)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda lp, context: quiet.log.allow() and lp.default_exception_handler(context))
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
