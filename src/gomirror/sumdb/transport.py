"""transport fetches checksum-database paths over HTTP from equivalent routes.

``HttpSumdbTransport(routes, session)`` takes the base URLs that serve one
database's log: the database itself (``https://sum.golang.org``, or the URL of
a ``"<key> <url>"`` setting) and mirrors' pass-throughs
(``https://goproxy.cn/sumdb/sum.golang.org``). ``database_routes`` builds that
list from the settings. A mirror route is a ``SumdbRoute(url, probe=True)``: as
the go command does, it counts only after ``<route>/supported`` answered 200.
A 404/410 there means the mirror does not proxy the database, so the route is
unavailable (never "no record"); that verdict, and a 200, are remembered for
``supported_ttl`` seconds, a failed probe for ``FAILED_PROBE_TTL``.

It is a ``RoutedTransport`` (see ``routes``): ``order()`` lists the routes with
the one that last succeeded first, ``fetch_from(route, path)`` asks one route,
and ``fetch(path)`` fails over across all of them and raises
``routes.no_route_error`` when none answers 200.

A route is a third party, treated like a mirror (``upstream.proxy``):

- bodies are capped at ``max_body`` (no checksum-database answer is
  legitimately larger than a few hundred KiB), a larger ``Content-Length``
  is refused before reading;
- every fetch, redirects included, must finish within ``timeout`` seconds and
  keep the minimum transfer rate of ``limits`` (``upstream.transfer``), so a
  route that drips is a timed-out route, not a stuck verification;
- it asks for ``Accept-Encoding: identity`` and decodes nothing: an answer
  with any other ``Content-Encoding`` is refused (a route bug or a bomb; the
  next route is tried);
- redirects are followed by hand, each hop judged by the mirrors'
  ``upstream.redirects.RedirectPolicy`` (``follow_redirects`` mode, at most
  ``MAX_HOPS``); credentials never travel to another origin.

Every refusal is an ``UpstreamError`` (a timeout an ``UpstreamTimeout``): the
route failed and the next one is asked. Credentials in a route URL are sent
(aiohttp turns userinfo into basic auth) but never appear in a log line, an
error or a route name: everything is named through ``redact_url``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
from yarl import URL

from gomirror.coordination.singleflight import SingleFlight
from gomirror.errors import Gone, NotFound, UpstreamError, UpstreamTimeout
from gomirror.sumdb.events import NoRouteEvents
from gomirror.sumdb.routes import Route, RouteUnavailable, fetch_verified
from gomirror.upstream.goproxy import redact_url
from gomirror.upstream.redirects import REDIRECT_STATUSES, RedirectPolicy, Resolve
from gomirror.upstream.transfer import RateGuard, TransferLimits

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
MAX_BODY = 4 << 20
USER_AGENT = "gomirror-sumdb"
SUPPORTED_TTL = 300.0
FAILED_PROBE_TTL = 10.0
CHUNK = 64 << 10
_IDENTITY = ("", "identity")
_USERINFO = re.compile(r"//[^/@\s]*@")


@dataclass(frozen=True, slots=True)
class SumdbRoute:
    """A base URL serving a database; ``probe`` for a mirror's pass-through."""

    url: str
    probe: bool = False


def database_routes(name: str, url: str | None, mirrors: Sequence[str]) -> list[SumdbRoute]:
    """Where to reach database ``name``: its explicit URL, else every mirror, then itself."""
    if url:
        return [SumdbRoute(url)]
    via = [SumdbRoute(f"{m.rstrip('/')}/sumdb/{name}", probe=True) for m in mirrors]
    return [*via, SumdbRoute(f"https://{name}")]


def _scrub(text: str) -> str:
    """Remove any userinfo from URLs inside a message (aiohttp errors may quote URLs)."""
    return _USERINFO.sub("//", text)


@dataclass(slots=True)
class _Verdict:
    until: float
    reason: str | None  # None: usable
    transient: bool = False


class HttpSumdbTransport:
    """Fetches ``<route>/<path>`` from one route or with failover (see the module docstring)."""

    def __init__(
        self,
        routes: Sequence[str | SumdbRoute],
        session: aiohttp.ClientSession,
        *,
        name: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = MAX_BODY,
        supported_ttl: float = SUPPORTED_TTL,
        clock: Callable[[], float] = time.monotonic,
        limits: TransferLimits | None = None,
        follow_redirects: str = "safe",
        resolve: Resolve | None = None,
    ) -> None:
        if not routes:
            raise ValueError("HttpSumdbTransport needs at least one route")
        self._specs = [
            SumdbRoute(r.rstrip("/"))
            if isinstance(r, str)
            else SumdbRoute(r.url.rstrip("/"), r.probe)
            for r in routes
        ]
        self._routes = [Route(i, redact_url(s.url)) for i, s in enumerate(self._specs)]
        self.name = name
        self._session = session
        self._deadline = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limits = limits or TransferLimits()
        self._redirects = [
            RedirectPolicy(URL(s.url), follow_redirects, resolve) for s in self._specs
        ]
        self._max_body = max_body
        self._supported_ttl = supported_ttl
        self._clock = clock
        self._verdicts: dict[int, _Verdict] = {}
        self._probes = SingleFlight()
        self._preferred = 0

    @property
    def route_names(self) -> list[str]:
        """The routes' redacted URLs, in configured order."""
        return [r.name for r in self._routes]

    def order(self) -> list[Route]:
        first = self._preferred
        return [self._routes[first]] + [r for r in self._routes if r.index != first]

    def succeeded(self, route: Route) -> None:
        self._preferred = route.index

    async def fetch(self, path: str) -> bytes:
        """Return the body of ``path`` (no leading slash) from the first route that has it."""

        async def accept(body: bytes) -> bytes:
            return body

        return await fetch_verified(self, self.name, path.lstrip("/"), accept, NoRouteEvents())

    async def fetch_from(self, route: Route, path: str) -> bytes:
        """Return ``path`` from one route; raises NotFound, Gone, RouteUnavailable, UpstreamError."""
        spec = self._specs[route.index]
        if spec.probe:
            await self._require_supported(route)
        path = path.lstrip("/")
        status, body = await self._get(route, f"{spec.url}/{path}")
        if status == 200:
            return body
        if status == 410:
            raise Gone(f"{status} Gone")
        if status == 404:
            raise NotFound(f"{status} Not Found")
        log.warning(
            "sumdb route failed", extra={"route": route.name, "path": path, "status": status}
        )
        raise UpstreamError(f"{path}: status {status}")

    async def _require_supported(self, route: Route) -> None:
        verdict = self._verdicts.get(route.index)
        if verdict is None or self._clock() >= verdict.until:
            verdict = await self._probes.do(str(route.index), lambda: self._probe(route))
        if verdict.reason is None:
            return
        if verdict.transient:
            raise UpstreamError(verdict.reason)
        raise RouteUnavailable(verdict.reason)

    async def _probe(self, route: Route) -> _Verdict:
        url = f"{self._specs[route.index].url}/supported"
        try:
            status, _ = await self._get(route, url)
        except UpstreamError as e:
            verdict = _Verdict(self._clock() + FAILED_PROBE_TTL, f"supported: {e}", True)
        else:
            if status == 200:
                verdict = _Verdict(self._clock() + self._supported_ttl, None)
            elif status in (404, 410):
                reason = f"does not proxy this checksum database (supported: {status})"
                verdict = _Verdict(self._clock() + self._supported_ttl, reason)
                log.warning("sumdb route does not proxy the database", extra={"route": route.name})
            else:
                reason = f"supported: status {status}"
                verdict = _Verdict(self._clock() + FAILED_PROBE_TTL, reason, True)
                log.warning("sumdb route failed", extra={"route": route.name, "status": status})
        self._verdicts[route.index] = verdict
        return verdict

    async def _get(self, route: Route, url: str) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self._deadline):
                return await self._follow(route, URL(url, encoded=True))
        except TimeoutError:
            log.warning("sumdb route failed", extra={"route": route.name, "error": "timeout"})
            raise UpstreamTimeout(f"timed out (deadline {self._deadline:g}s)") from None
        except UpstreamTimeout as e:
            log.warning("sumdb route failed", extra={"route": route.name, "error": str(e)})
            raise
        except UpstreamError as e:
            log.warning("sumdb route failed", extra={"route": route.name, "error": _scrub(str(e))})
            raise
        except aiohttp.ClientError as e:
            reason = _scrub(str(e) or type(e).__name__)
            log.warning("sumdb route failed", extra={"route": route.name, "error": reason})
            raise UpstreamError(f"connection failed: {reason}") from None

    async def _follow(self, route: Route, url: URL) -> tuple[int, bytes]:
        """GET url, following the redirects the route's policy allows; the final status and body."""
        policy = self._redirects[route.index]
        hop = 0
        while True:
            async with self._session.get(
                url,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                allow_redirects=False,
                auto_decompress=False,
            ) as resp:
                if resp.status in REDIRECT_STATUSES and "Location" in resp.headers:
                    hop += 1
                    url = await _next_hop(policy, url, resp.headers["Location"], hop)
                    continue
                if resp.status != 200:
                    resp.release()
                    return resp.status, b""
                return 200, await self._read(resp)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _IDENTITY:
            raise UpstreamError(
                f"answer sent with Content-Encoding {encoding[:40]!r} (asked for identity)"
            )
        declared = resp.content_length
        if declared is not None and declared > self._max_body:
            raise UpstreamError(
                f"response larger than {self._max_body} bytes ({declared} declared)"
            )
        guard = self._limits.guard()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > self._max_body:
                raise UpstreamError(f"response larger than {self._max_body} bytes")
            chunks.append(chunk)
            _check_rate(guard, size)
        return b"".join(chunks)


async def _next_hop(policy: RedirectPolicy, current: URL, location: str, hop: int) -> URL:
    try:
        target = current.join(URL(location))
    except ValueError:
        raise UpstreamError("redirect to an invalid URL") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise UpstreamError(f"redirect to an unsupported URL ({target.scheme or 'no'} scheme)")
    if (target.scheme, target.host, target.port) != (current.scheme, current.host, current.port):
        target = target.with_user(None)  # credentials never travel to another origin
    why = await policy.refusal(current, target, hop)
    if why is not None:
        raise UpstreamError(_scrub(why))
    return target


def _check_rate(guard: RateGuard | None, total: int) -> None:
    if guard is None:
        return
    rate = guard.too_slow(total)
    if rate is not None:
        raise UpstreamTimeout(f"too slow ({rate:.0f} bytes/s)")
