"""events names what the sumdb code reports about checksum-database routes that misbehave.

``RouteEvents.route_rejected(db, route, what, detail)`` is called once each time
a route served content that failed authentication (a tile that does not hash to
the signed tree, a record that is not in it, a note with a bad signature or
that contradicts the persisted tree head). ``route`` is the route's redacted
URL, ``what`` the path it served (``tile/8/0/000``, ``lookup/...``, ``latest``)
and ``detail`` the reason. The event recorder implements it; ``NoRouteEvents``
is the default that does nothing. A failing implementation never breaks the
request that reported the event.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class RouteEvents(Protocol):
    """Receives route rejections (see the module docstring)."""

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None: ...


class NoRouteEvents:
    """The default RouteEvents: rejections are only logged."""

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        return None


async def report_rejection(
    events: RouteEvents, db: str, route: str, what: str, detail: str
) -> None:
    """Log a rejection at warning and hand it to ``events``; never raises."""
    first_line = detail.split("\n", 1)[0]
    log.warning(
        "sumdb route rejected",
        extra={"db": db, "route": route, "what": what, "reason": first_line},
    )
    try:
        await events.route_rejected(db, route, what, detail)
    except Exception:  # an event sink must not turn a recovered failure into an error
        log.exception("sumdb route event failed", extra={"db": db, "route": route})
