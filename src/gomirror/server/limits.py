"""server.limits protects the server from slow and abusive clients at the connection level.

aiohttp closes a connection that has not completed a request within its
keep-alive timeout, counted from the moment the connection opens, so a client
that dribbles header bytes is dropped after ``idle_timeout`` (our header
timeout). What it lacks is a connection limit: ``limit_connections`` makes
the server answer every connection past ``max_connections`` at once with a
short ``503`` (``Retry-After: 1``) and close it, so legitimate clients get a
clear answer instead of a hang, and file descriptors are never exhausted.
``raise_fd_limit`` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at
start-up, as servers do.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 45\r\n"
    b"\r\n"
    b"gomirror: too many connections, retry later\n\n"
)


def limit_connections(server: web.Server, max_connections: int) -> None:
    """Refuse connections past max_connections with a 503 (see the module docstring)."""
    accept = server.connection_made

    def guarded(handler: Any, transport: asyncio.Transport) -> None:
        if len(server.connections) >= max_connections:
            log.warning("connection limit reached", extra={"max_connections": max_connections})
            transport.write(BUSY)
            # Close on the next loop turn: the handler's start() task must run first, or it
            # finds its manager gone and dies with an AssertionError logged as an error.
            asyncio.get_running_loop().call_soon(transport.close)
            return
        accept(handler, transport)

    server.connection_made = guarded  # type: ignore[method-assign]


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
