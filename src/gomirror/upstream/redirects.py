"""upstream.redirects decides which redirects from a mirror ``HttpUpstream`` follows.

A mirror is a third party: left to the HTTP client, a redirect could send
gomirror to any host and port, an internal service included (a request
forgery that starts at the mirror). ``RedirectPolicy(base, mode)`` judges
each hop before it is requested; ``refusal`` returns why a hop is refused, or
``None``. Modes (the ``follow_redirects`` setting):

- ``safe`` (default): any host, but never from https to plain http, and never
  to an address that is not globally routable (loopback, link-local, private,
  carrier-grade NAT, multicast, reserved, unspecified; IPv4-mapped IPv6
  addresses count as their IPv4 address), whether the target is an IP
  literal or a name (every address it resolves to is checked). A mirror that
  is itself on such an address (a mirror inside the company network) may
  redirect to such addresses too;
- ``same-host``: only to the mirror's own scheme, host and port;
- ``none``: never; a redirect is an error.

At most ``MAX_HOPS`` redirects are followed in every mode. Only the schemes
``http`` and ``https`` are ever followed. Names are resolved with an
injectable ``resolve`` (default: the event loop's ``getaddrinfo``); the
client resolves the name again when it connects, so a name whose answers
change between the two lookups is not caught here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from yarl import URL

__all__ = [
    "MAX_HOPS",
    "MODES",
    "REDIRECT_STATUSES",
    "RedirectPolicy",
    "Resolve",
    "is_internal",
    "resolve_host",
]

MODES = ("safe", "same-host", "none")
MAX_HOPS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


def is_internal(ip: Address) -> bool:
    """Report whether ip is not a globally routable unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_internal(mapped)
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return True
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
    )


async def resolve_host(host: str, port: int) -> Sequence[str]:
    """Every address ``host`` resolves to (the default ``Resolve``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class RedirectPolicy:
    """Judges the redirects of one mirror at ``base`` (see the module docstring)."""

    def __init__(self, base: URL, mode: str = "safe", resolve: Resolve | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown redirect mode {mode!r}")
        self.base = base
        self.mode = mode
        self.max_hops = 0 if mode == "none" else MAX_HOPS
        self._resolve = resolve or resolve_host
        self._base_internal: bool | None = None

    async def refusal(self, current: URL, target: URL, hop: int) -> str | None:
        """Why the redirect from current to target (the hop-th) may not be followed; None: it may."""
        if self.mode == "none":
            return "redirects are not followed (follow_redirects = none)"
        if hop > self.max_hops:
            return f"more than {self.max_hops} redirects"
        if target.scheme not in ("http", "https") or not target.host:
            return f"redirect to an unsupported URL ({target.scheme or 'no'} scheme)"
        if current.scheme == "https" and target.scheme != "https":
            return "redirect from https to insecure http"
        if self.mode == "same-host":
            if (target.scheme, target.host.lower(), target.port) != (
                self.base.scheme,
                (self.base.host or "").lower(),
                self.base.port,
            ):
                return f"redirect to another host ({target.host}) (follow_redirects = same-host)"
            return None
        if await self._is_base_internal():
            return None  # a mirror on an internal network may send us around in it
        return await self._internal_target(target)

    async def _is_base_internal(self) -> bool:
        if self._base_internal is None:
            try:
                addrs = await self._addresses(self.base)
            except OSError:
                addrs = []
            self._base_internal = any(is_internal(a) for a in addrs)
        return self._base_internal

    async def _internal_target(self, target: URL) -> str | None:
        host = target.host or ""
        try:
            addrs = await self._addresses(target)
        except OSError as e:
            return f"redirect to {host}, which does not resolve ({e.strerror or e})"
        if not addrs:
            return f"redirect to {host}, which does not resolve"
        for addr in addrs:
            if is_internal(addr):
                return f"redirect to an internal address ({host} is {addr})"
        return None

    async def _addresses(self, url: URL) -> list[Address]:
        host = url.host or ""
        literal = _literal(host)
        if literal is not None:
            return [literal]
        out: list[Address] = []
        for text in await self._resolve(host, url.port or 0):
            addr = _literal(text)
            if addr is None:
                raise OSError(f"resolver returned a non-address {text!r}")
            out.append(addr)
        return out
