"""netguard refuses, before any packet leaves, every socket connect or send to an address outside loopback.

Contract: while a ``NetGuard`` is installed, ``connect``/``connect_ex`` on an
``AF_INET``/``AF_INET6`` socket, and ``sendto``/``sendmsg`` with an explicit
address, raise ``NetworkGuardError`` naming the address unless it is in
127.0.0.0/8 or ``::1`` (IPv4-mapped loopback counts), or the host name is
``localhost``. Any other host name is refused without resolving it, so the
check itself sends no DNS query. Unix and other socket families are untouched.
Every refusal is also recorded in ``blocked`` so a test fixture can fail a
test whose code swallowed the exception.

The patch is on the Python ``socket.socket`` class, which every user of the
stdlib goes through: ``socket.create_connection``, ``ssl``, ``http.client``
and asyncio (``loop.sock_connect`` calls ``sock.connect`` on a non-blocking
socket, and aiohttp connects through it). Child processes (the ``go``
command) are not covered; they get their isolation from their environment.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_GUARDED_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


class NetworkGuardError(Exception):
    """A test tried to reach a non-loopback address.

    Deliberately not an ``OSError`` (nor ``RuntimeError``, which asyncio and
    aiohappyeyeballs also treat as a connect failure): code under test that
    handles connection errors, e.g. by failing over to the next upstream,
    must not mistake the guard for an ordinary unreachable host.
    """


def _is_loopback_host(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower().rstrip(".") in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: refuse rather than resolve it here
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class NetGuard:
    """Installs and removes the socket patch; ``blocked`` lists refused addresses."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self._saved: dict[str, Callable[..., Any]] = {}

    def check(self, sock: socket.socket, address: Any) -> None:
        """Raise ``NetworkGuardError`` if ``sock`` must not reach ``address``."""
        if sock.family not in _GUARDED_FAMILIES:
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if _is_loopback_host(host):
            return
        self.blocked.append(repr(address))
        raise NetworkGuardError(
            f"test network guard: refused connection to {address!r}; "
            "tests may only reach 127.0.0.0/8 or ::1"
        )

    def take(self) -> list[str]:
        """Return and forget the addresses refused so far (for tests that expect refusals)."""
        taken, self.blocked = self.blocked, []
        return taken

    def install(self) -> None:
        """Patch ``socket.socket``; idempotent."""
        if self._saved:
            return
        cls = socket.socket
        self._saved = {
            name: getattr(cls, name) for name in ("connect", "connect_ex", "sendto", "sendmsg")
        }
        real = self._saved
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            guard.check(sock, address)
            real["connect"](sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check(sock, address)
            result: int = real["connect_ex"](sock, address)
            return result

        def sendto(sock: socket.socket, data: Any, *args: Any) -> int:
            # sendto(data, address) or sendto(data, flags, address)
            guard.check(sock, args[-1] if args else None)
            result: int = real["sendto"](sock, data, *args)
            return result

        def sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
            # sendmsg(buffers[, ancdata[, flags[, address]]]); no address means connected
            if len(args) >= 3 and args[2] is not None:
                guard.check(sock, args[2])
            result: int = real["sendmsg"](sock, buffers, *args)
            return result

        patches: dict[str, Callable[..., Any]] = {
            "connect": connect,
            "connect_ex": connect_ex,
            "sendto": sendto,
            "sendmsg": sendmsg,
        }
        for name, fn in patches.items():
            setattr(cls, name, fn)

    def uninstall(self) -> None:
        """Restore the original ``socket.socket`` methods."""
        for name, fn in self._saved.items():
            setattr(socket.socket, name, fn)
        self._saved = {}
