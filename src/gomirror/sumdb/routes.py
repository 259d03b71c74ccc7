"""routes says how checksum-database routes are tried, and what it means when none works.

A route is one base URL serving a database: the database itself, or a mirror's
``/sumdb/<name>`` pass-through. A ``RoutedTransport`` fetches from one route at
a time, so content that fails authentication is pinned on the route that
served it. ``fetch_verified(routes, db, path, check, events)`` tries the routes
in preference order, runs ``check`` on each body and moves on when it raises
``RouteRejected`` (reported to ``RouteEvents``), or when the route failed.

When no route gives an accepted answer, ``no_route_error`` decides what that
means, strongest evidence first:

- a route served content that failed authentication: ``SumdbError`` with the
  reason on the first line and the route named;
- a working route said the path does not exist: ``NotFound`` (``Gone`` when
  every such route said 410) — a route that does not proxy the database at all
  (``RouteUnavailable``) never counts as "no record";
- otherwise ``SumdbUnavailable`` (a SumdbError: asking another module mirror
  cannot help): every route is listed with why it failed, and
  the message says how to fix the setup.

Route names are redacted URLs (no userinfo); implementations must keep
credentials out of every message they raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from gomirror.errors import GomirrorError, Gone, NotFound, SumdbError, UpstreamError
from gomirror.sumdb.events import RouteEvents, report_rejection

T = TypeVar("T")

FailureKind = Literal["rejected", "not_found", "gone", "unavailable", "failed"]
MAX_LISTED_ROUTES = 5
MAX_REASON = 160
FIX_HINT = (
    "fix: add an upstream mirror that proxies the checksum database (e.g. https://goproxy.cn),"
    ' give the database URL in sumdb ("<key> <url>"), or set sumdb = "off"'
    " (then nothing is verified against the checksum database)"
)


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a transport: its position and its redacted URL."""

    index: int
    name: str


class RouteUnavailable(UpstreamError):
    """The route does not serve this database (a mirror whose ``supported`` is not 200)."""


class RouteRejected(SumdbError):
    """Content a route served failed authentication; raised by checks to try the next route."""


class SumdbUnavailable(SumdbError):
    """No route to a checksum database works; the message lists each route and how to fix it.

    A verification failure, not an upstream one: another module mirror cannot help.
    """


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """Why one route did not give an accepted answer."""

    route: str
    kind: FailureKind
    detail: str


@runtime_checkable
class RoutedTransport(Protocol):
    """A transport whose routes can be tried one at a time (``HttpSumdbTransport`` is one).

    ``fetch_from`` raises NotFound/Gone when the route answered 404/410,
    RouteUnavailable when it does not serve the database, UpstreamError otherwise.
    """

    def order(self) -> list[Route]: ...

    async def fetch_from(self, route: Route, path: str) -> bytes: ...

    def succeeded(self, route: Route) -> None: ...


class PlainTransport(Protocol):
    """Anything with ``fetch(path)``: the SumdbTransport protocol of the client."""

    async def fetch(self, path: str) -> bytes: ...


class SingleRoute:
    """Adapts a plain ``fetch(path)`` transport as one route named ``name``."""

    def __init__(self, transport: PlainTransport, name: str = "checksum database") -> None:
        self._transport = transport
        self._route = Route(0, name)

    def order(self) -> list[Route]:
        return [self._route]

    async def fetch_from(self, route: Route, path: str) -> bytes:
        return await self._transport.fetch(path)

    def succeeded(self, route: Route) -> None:
        return None


def as_routed(transport: PlainTransport) -> RoutedTransport:
    """Return ``transport`` itself when it has routes, else a one-route adapter."""
    if isinstance(transport, RoutedTransport):
        return transport
    return SingleRoute(transport)


def _short(text: str) -> str:
    line = text.split("\n", 1)[0].strip() or "failed"
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def failure_of(route: Route, err: GomirrorError) -> RouteFailure:
    """Classify the exception a ``fetch_from`` raised."""
    if isinstance(err, Gone):
        return RouteFailure(route.name, "gone", _short(str(err)))
    if isinstance(err, NotFound):
        return RouteFailure(route.name, "not_found", _short(str(err)))
    if isinstance(err, RouteUnavailable):
        return RouteFailure(route.name, "unavailable", _short(str(err)))
    return RouteFailure(route.name, "failed", _short(str(err)))


def no_route_error(db: str, what: str, failures: Sequence[RouteFailure]) -> GomirrorError:
    """The error for ``what`` when every route failed (see the module docstring)."""
    rejected = [f for f in failures if f.kind == "rejected"]
    if rejected:
        first = rejected[0]
        head, sep, rest = first.detail.partition("\n")
        also = [f.route for f in rejected[1:] if f.route != first.route]
        where = f" (served by {first.route}" + (
            f"; also rejected from {', '.join(also)})" if also else ")"
        )
        return SumdbError(head + where + sep + rest)
    missing = [f for f in failures if f.kind in ("not_found", "gone")]
    if missing:
        detail = "; ".join(f"{f.route}: {f.detail}" for f in missing)
        if all(f.kind == "gone" for f in missing):
            return Gone(f"{what}: gone ({detail})")
        return NotFound(f"{what}: not found ({detail})")
    name = f"checksum database {db}" if db else "checksum database"
    count = len(failures)
    lines = [f"{name} unavailable: none of its {count} routes works ({what})"]
    if count == 1:
        lines[0] = f"{name} unavailable: its only route failed ({what})"
    lines.extend(f"  {f.route}: {f.detail}" for f in failures[:MAX_LISTED_ROUTES])
    if count > MAX_LISTED_ROUTES:
        lines.append(f"  ... and {count - MAX_LISTED_ROUTES} more")
    lines.append(FIX_HINT)
    return SumdbUnavailable("\n".join(lines))


async def fetch_verified(
    routes: RoutedTransport,
    db: str,
    path: str,
    check: Callable[[bytes], Awaitable[T]],
    events: RouteEvents,
    *,
    skip: Container[int] = (),
) -> T:
    """Return ``check(body)`` for the first route whose body ``check`` accepts.

    ``check`` raises RouteRejected to reject the body; any other exception it
    raises ends the search (it is not the route's fault). Routes whose index is
    in ``skip`` are not asked.
    """
    failures: list[RouteFailure] = []
    for route in routes.order():
        if route.index in skip:
            continue
        try:
            body = await routes.fetch_from(route, path)
        except (NotFound, UpstreamError) as e:
            failures.append(failure_of(route, e))
            continue
        try:
            value = await check(body)
        except RouteRejected as e:
            await report_rejection(events, db, route.name, path, str(e))
            failures.append(RouteFailure(route.name, "rejected", str(e)))
            continue
        routes.succeeded(route)
        return value
    raise no_route_error(db, path, failures)
