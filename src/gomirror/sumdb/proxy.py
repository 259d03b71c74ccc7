"""proxy serves the GOPROXY checksum-database pass-through ``/sumdb/<name>/...``.

``SumdbPassThrough(clients).handle_path(rest)`` answers ``supported``,
``latest``, ``lookup/<escpath>@<escver>`` and ``tile/8/L|data/NNN[.p/W]`` for
the databases of the given ``SumdbClient``s and returns an ``answers.Answer``
(body, type, lifetime, cache result). It raises domain errors instead of
choosing statuses: NotFound for an unknown database, path, record or tile,
InvalidRequest for a malformed path, UpstreamError (``SumdbUnavailable`` when
no route works) or SumdbError when routes failed or served content that does
not authenticate.

Nothing is served or cached before it is authenticated, by the same client
(and persisted tree head) that verifies downloads: a lookup's note must open
with the database key and be consistent with the newest verified tree, and its
record must be included in it; a tile must hash to that tree. The bytes served
are the database's own, so the go command re-verifies them and finds them
consistent. A tile the go command asks for in the shape of an older tree
(``.p/W``) is cut from the tile of the newest verified tree; a tile beyond
that tree first refreshes it from ``latest`` (at most once per
``latest_ttl``), and is NotFound if it still lies beyond. Tiles and lookups
are immutable; ``latest`` is fresh for ``latest_ttl`` seconds and served
stale (the newest verified head) when every route fails.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

from gomirror.answers import IMMUTABLE, STALE, Answer, Lifetime
from gomirror.coordination.singleflight import SingleFlight
from gomirror.errors import GomirrorError, InvalidRequest, NotFound, SumdbError, UpstreamError
from gomirror.module.paths import escape_path, escape_version, unescape_path, unescape_version
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.tiles import parse_tile_path

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=UTF-8"
BINARY = "application/octet-stream"
SUPPORTED_LIFETIME = Lifetime.fresh(300)
DEFAULT_LATEST_TTL = 30.0
MAX_TILE_LEVEL = 63
_MOD_VER = re.compile(r"[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?")


class SumdbPassThrough:
    """Serves ``/sumdb/<name>/...`` for the given databases (see module docstring)."""

    def __init__(
        self,
        clients: Iterable[SumdbClient],
        *,
        latest_ttl: float = DEFAULT_LATEST_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = {c.name: c for c in clients}
        self._latest_ttl = latest_ttl
        self._clock = clock
        self._refreshed: dict[str, float] = {}
        self._flight = SingleFlight()

    @property
    def names(self) -> list[str]:
        """The database names served."""
        return sorted(self._clients)

    def split(self, path: str) -> tuple[str, str] | None:
        """Split ``<name>/<subpath>`` (the part after ``/sumdb/``) using the configured names."""
        for name in sorted(self._clients, key=len, reverse=True):  # names may contain slashes
            if path.startswith(name + "/"):
                return name, path[len(name) + 1 :]
        return None

    async def handle_path(self, path: str) -> Answer:
        """Answer the part of a request path after ``/sumdb/``."""
        parts = self.split(path)
        if parts is None:
            raise NotFound("unknown checksum database")
        return await self.handle(*parts)

    async def handle(self, name: str, subpath: str) -> Answer:
        """Answer ``/sumdb/<name>/<subpath>``."""
        client = self._clients.get(name)
        if client is None:
            raise NotFound(f"unknown checksum database {name}")
        if subpath == "supported":
            return Answer(b"", TEXT, SUPPORTED_LIFETIME, "hit")
        if subpath == "latest":
            return await self._serve_latest(client)
        if subpath.startswith("lookup/"):
            return await self._serve_lookup(client, subpath)
        if subpath.startswith("tile/"):
            return await self._serve_tile(client, subpath)
        raise NotFound("404 page not found")

    # --- latest ------------------------------------------------------------------

    def _fresh(self, name: str) -> bool:
        at = self._refreshed.get(name)
        return at is not None and self._clock() - at < self._latest_ttl

    async def _refresh(self, client: SumdbClient) -> None:
        async def run() -> None:
            await client.refresh()
            self._refreshed[client.name] = self._clock()

        await self._flight.do("latest " + client.name, run)

    async def _serve_latest(self, client: SumdbClient) -> Answer:
        await client.ready()
        lifetime = Lifetime.fresh(self._latest_ttl)
        if self._fresh(client.name) and client.latest_note:
            return Answer(client.latest_note, TEXT, lifetime, "hit")
        try:
            await self._refresh(client)
        except (NotFound, UpstreamError, SumdbError) as e:
            stale = client.latest_note
            if not stale:
                raise
            log.warning(
                "sumdb latest served stale",
                extra={"db": client.name, "error": str(e).split("\n", 1)[0]},
            )
            return Answer(stale, TEXT, STALE, "stale", stale_reason=str(e).split("\n", 1)[0])
        return Answer(client.latest_note, TEXT, lifetime, "miss")

    # --- lookups -----------------------------------------------------------------

    async def _serve_lookup(self, client: SumdbClient, subpath: str) -> Answer:
        mod = subpath.removeprefix("lookup/")
        if not _MOD_VER.fullmatch(mod):
            raise InvalidRequest("invalid module@version syntax")
        esc_path, _, esc_vers = mod.partition("@")
        module, version = unescape_path(esc_path), unescape_version(esc_vers)
        if escape_path(module) != esc_path or escape_version(version) != esc_vers:
            raise InvalidRequest("invalid module@version syntax")  # only canonical paths
        try:
            found = await client.lookup_record(module, version)
        except NotFound as e:
            raise NotFound(f"not found: {module}@{version}") from e
        return Answer(found.body, TEXT, IMMUTABLE, "hit" if found.cached else "miss")

    # --- tiles -------------------------------------------------------------------

    async def _serve_tile(self, client: SumdbClient, subpath: str) -> Answer:
        tile = parse_tile_path(subpath)  # BadTilePath is an InvalidRequest
        if tile.L > MAX_TILE_LEVEL:
            raise NotFound("tile not found")
        await client.ready()
        if not client.covers(tile) and not self._fresh(client.name):
            # The go command asks for tiles of trees it has seen; ours may be older.
            try:
                await self._refresh(client)
            except GomirrorError:
                if not client.covers(tile):
                    raise
        data, cached = await self._flight.do(f"{client.name}/{subpath}", lambda: client.tile(tile))
        ctype = TEXT if tile.L == -1 else BINARY
        return Answer(data, ctype, IMMUTABLE, "hit" if cached else "miss")
