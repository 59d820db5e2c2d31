"""`worldgame serve`: the game in a web page. One page, one WebSocket; each connection gets its own
dream (its own engine state and seed) on the one model loaded at start, stepped at the tick rate.

One concern a file, each importing only the ones listed before it:

* protocol.py: the messages, ``worldgame/web/app.js``'s contract: the client's messages checked
  (:func:`parse_message`), the binary frame, the hello and stats shapes, the close codes, the
  stage names in the source pipeline's terms;
* guard.py: the Host/Origin checks, the rate buckets, the TCP site capped in connections, the
  quiet log;
* connection.py: one player: its dream's tick, the tick loop and the sender, the message reader,
  the recording quotas;
* server.py: the shared model and its one thread, fairness between dreams, the aiohttp app and
  :func:`run`, the entry point of ``worldgame serve``.

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

This package re-exports the names other modules and the tests use. A test that patches a method
patches the class (``Connection.tick``), which is the one object whichever module names it.
"""

from worldgame.commands.serve.connection import CATCH_UP, Connection
from worldgame.commands.serve.guard import Bucket, CappedSite, QuietLog, host_ok, origin_ok
from worldgame.commands.serve.protocol import (
    CLOSE_BUSY,
    CLOSE_ERROR,
    CLOSE_GOING_AWAY,
    CLOSE_IDLE,
    CLOSE_INVALID,
    FRAME_MAGIC,
    HEADER,
    MAX_HELD,
    MAX_MESSAGE,
    PAGE_COMMAND_NAMES,
    STAGE_TERMS,
    STATS_EVERY_S,
    BadMessage,
    Message,
    frame_message,
    parse_message,
    work,
)
from worldgame.commands.serve.server import SERVER, Server, make_app, run, start

__all__ = [
    "CATCH_UP",
    "CLOSE_BUSY",
    "CLOSE_ERROR",
    "CLOSE_GOING_AWAY",
    "CLOSE_IDLE",
    "CLOSE_INVALID",
    "FRAME_MAGIC",
    "HEADER",
    "MAX_HELD",
    "MAX_MESSAGE",
    "PAGE_COMMAND_NAMES",
    "SERVER",
    "STAGE_TERMS",
    "STATS_EVERY_S",
    "BadMessage",
    "Bucket",
    "CappedSite",
    "Connection",
    "Message",
    "QuietLog",
    "Server",
    "frame_message",
    "host_ok",
    "make_app",
    "origin_ok",
    "parse_message",
    "run",
    "start",
    "work",
]
