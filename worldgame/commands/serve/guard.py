"""What stands between a hostile client and the rest: the Host and Origin checks (DNS rebinding,
other sites' pages), token buckets (message floods, dream churn), a TCP site capped in connections,
and a log that a client making errors at line rate cannot flood."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import time
import traceback
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from worldgame.settings import ServeSettings


def origin_ok(origin: str | None, host: str | None) -> bool:
    """A browser's Origin must name this server (the Host it asked); clients without one pass."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == str(host).lower()


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


def host_guard(cfg: ServeSettings) -> Any:
    """The app's middleware: 403 for a Host that is not this server, before anything else (the page
    and the socket)."""

    @web.middleware
    async def host_check(request: web.Request, handler: Any) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if sockname else -1
        if not host_ok(request.headers.get("Host"), port, cfg.host):
            return web.Response(status=403, text="forbidden: the Host header does not name this server")
        return await handler(request)

    return host_check


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


def quiet_logs(log: QuietLog) -> None:
    """asyncio's and aiohttp's own lines, and the running loop's unhandled exceptions, within ``log``'s
    cap (one filter at a time: an earlier server's is replaced)."""
    quiet = _QuietFilter(log)
    for name in ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.websocket", "aiohttp.internal"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _QuietFilter)]:  # an earlier server's (tests)
            logger.removeFilter(old)
        logger.addFilter(quiet)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda lp, context: quiet.log.allow() and lp.default_exception_handler(context))


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
