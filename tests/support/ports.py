"""ports finds free loopback TCP ports and waits for a listener to accept connections.

Contract: ``free_port()`` returns a TCP port on 127.0.0.1 that was free at the time of the
call (the kernel picked it for a socket that is then closed). ``wait_for_port(host, port,
timeout)`` polls ``connect()`` with a tiny interval until it succeeds (returns the elapsed
seconds) or ``timeout`` seconds pass (raises ``TimeoutError``). This is readiness polling on a
real condition, not a sleep used as synchronisation. ``port_is_open`` is a single probe.
``wait_for_port_closed`` is the converse, ``wait_until(predicate, timeout)`` the generic poll,
``free_ports(n)`` returns n distinct free ports and ``wait_for_http(url)`` polls until an HTTP
server answers any status on ``url``.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = [
    "free_port",
    "free_ports",
    "port_is_open",
    "wait_for_http",
    "wait_for_port",
    "wait_for_port_closed",
    "wait_until",
]

POLL_INTERVAL = 0.005


def free_port(host: str = "127.0.0.1") -> int:
    """Return a currently free TCP port on ``host`` (loopback by default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``n`` distinct currently free ports (all sockets are held until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> float:
    """Poll until ``host:port`` accepts a TCP connection; return the seconds waited.

    Raises ``TimeoutError`` when nothing accepts within ``timeout`` seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if port_is_open(host, port, timeout=max(0.05, min(1.0, deadline - time.monotonic()))):
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout}s")
        time.sleep(POLL_INTERVAL)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    interval: float = POLL_INTERVAL,
    what: str = "condition",
) -> float:
    """Poll ``predicate`` until True; return the seconds waited, or raise TimeoutError."""
    start = time.monotonic()
    deadline = start + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


def wait_for_port_closed(host: str, port: int, timeout: float = 10.0) -> float:
    """Poll until ``host:port`` refuses connections; return the seconds waited."""
    return wait_until(lambda: not port_is_open(host, port), timeout, what=f"{host}:{port} closed")


def _http_answers(url: str) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=1)
    try:
        conn.request("GET", parts.path or "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def wait_for_http(url: str, timeout: float = 10.0) -> float:
    """Poll until an HTTP server answers a GET of ``url`` with any status; return seconds waited."""
    return wait_until(lambda: _http_answers(url), timeout, what=f"HTTP answer from {url}")
