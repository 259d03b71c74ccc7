"""proxy serves the GOPROXY checksum-database pass-through ``/sumdb/<name>/...`` with caching.

``SumdbPassThrough.handle(name, subpath)`` answers ``supported``, ``latest``,
``lookup/<escpath>@<escver>`` and ``tile/H/L|data/NNN[.p/W]`` for the configured
databases and returns a ``Response``; it never raises for expected failures.
Upstream bytes are passed through unchanged (notes are signed and tiles are
re-hashed by the go command), after cheap sanity checks that keep garbage out
of the cache: lookups must parse and their note must open with the database key
when one is configured, hash tiles must be exactly W·32 bytes, data tiles must
hold W records. Tiles and lookups are immutable, so they are cached forever in
storage under the GOPROXY-tree keys ``sumdb/<name>/...``; a cached full tile
also answers a later partial request by truncation. An upstream 404 for a
partial tile is forwarded: the go command then asks for the full tile. ``latest``
is cached for a short time and served stale if every route fails. An unknown
database name answers 404, which makes the go command try its next proxy.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gomirror.errors import InvalidRequest, NotFound, SumdbError, UpstreamError
from gomirror.module.paths import unescape_path, unescape_version
from gomirror.storage.coordination import SingleFlight
from gomirror.sumdb.client import StateStore, SumdbTransport, cache_prefix
from gomirror.sumdb.note import Verifier, open_note, parse_verifier
from gomirror.sumdb.tiles import BadTilePath, Tile, parse_tile_path
from gomirror.sumdb.tlog import HASH_SIZE, parse_record, parse_tree

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=UTF-8"
TEXT_ERROR = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
CACHE_FOREVER = "public, max-age=31536000, immutable"
CACHE_SUPPORTED = "public, max-age=300"
CACHE_NOT_FOUND = "public, max-age=60"
CACHE_NONE = "no-store"
DEFAULT_LATEST_TTL = 30.0
_MOD_VER = re.compile(r"[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?")


@dataclass(frozen=True, slots=True)
class Response:
    """One answer of the pass-through, ready for the HTTP layer."""

    status: int
    content_type: str
    body: bytes
    cache_control: str


def _text(status: int, message: str, cache_control: str) -> Response:
    return Response(status, TEXT_ERROR, message.encode() + b"\n", cache_control)


def _bad_gateway(message: str) -> Response:
    return _text(502, message, CACHE_NONE)


class _InvalidUpstream(UpstreamError):
    """The database answered 200 with bytes that cannot be what it should serve."""


def _truncate_data_tile(data: bytes, width: int) -> bytes | None:
    """Return the first ``width`` records of a data tile, or None if it has fewer."""
    records = data.split(b"\n\n")[:-1]
    if len(records) < width:
        return None
    return b"".join(r + b"\n\n" for r in records[:width])


class SumdbPassThrough:
    """Serves ``/sumdb/<name>/...`` for the configured databases (see module docstring)."""

    def __init__(
        self,
        dbs: Mapping[str, SumdbTransport],
        store: StateStore,
        *,
        verifier_keys: Mapping[str, str] | None = None,
        latest_ttl: float = DEFAULT_LATEST_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dbs = dict(dbs)
        self._store = store
        self._verifiers: dict[str, Verifier] = {
            name: parse_verifier(key) for name, key in (verifier_keys or {}).items()
        }
        self._latest_ttl = latest_ttl
        self._clock = clock
        self._latest: dict[str, tuple[float, bytes]] = {}
        self._flight = SingleFlight()

    @property
    def names(self) -> list[str]:
        """The database names served."""
        return sorted(self._dbs)

    def split(self, path: str) -> tuple[str, str] | None:
        """Split ``<name>/<subpath>`` (the part after ``/sumdb/``) using the configured names."""
        for name in sorted(self._dbs, key=len, reverse=True):  # names may contain slashes
            if path.startswith(name + "/"):
                return name, path[len(name) + 1 :]
        return None

    async def handle_path(self, path: str) -> Response:
        """Answer the part of a request path after ``/sumdb/``."""
        parts = self.split(path)
        if parts is None:
            return _text(404, "unknown checksum database", CACHE_NOT_FOUND)
        return await self.handle(*parts)

    async def handle(self, name: str, subpath: str) -> Response:
        """Answer ``/sumdb/<name>/<subpath>``."""
        transport = self._dbs.get(name)
        if transport is None:
            return _text(404, f"unknown checksum database {name}", CACHE_NOT_FOUND)
        if subpath == "supported":
            return Response(200, TEXT, b"", CACHE_SUPPORTED)
        if subpath == "latest":
            return await self._serve_latest(name, transport)
        if subpath.startswith("lookup/"):
            return await self._serve_lookup(name, transport, subpath)
        if subpath.startswith("tile/"):
            return await self._serve_tile(name, transport, subpath)
        return _text(404, "404 page not found", CACHE_NOT_FOUND)

    async def _serve_latest(self, name: str, transport: SumdbTransport) -> Response:
        now = self._clock()
        cached = self._latest.get(name)
        if cached is not None and now - cached[0] < self._latest_ttl:
            return Response(200, TEXT, cached[1], f"public, max-age={int(self._latest_ttl)}")
        key = cache_prefix(name) + "latest"
        try:
            body = await self._flight.do(key, lambda: transport.fetch("latest"))
            self._check_note(name, body)
        except (NotFound, UpstreamError, SumdbError) as e:
            stale = cached[1] if cached is not None else await self._store.get(key)
            if stale is not None:
                log.warning("sumdb latest served stale", extra={"db": name, "error": str(e)})
                return Response(200, TEXT, stale, "max-age=0")
            return _bad_gateway(f"checksum database {name} unavailable: {e}")
        self._latest[name] = (now, body)
        await self._store.put_bytes(key, body)
        return Response(200, TEXT, body, f"public, max-age={int(self._latest_ttl)}")

    def _check_note(self, name: str, note_msg: bytes) -> None:
        verifier = self._verifiers.get(name)
        if verifier is None:
            return
        try:
            parse_tree(open_note(note_msg, [verifier]).text.encode())
        except SumdbError as e:
            raise _InvalidUpstream(f"invalid signed tree from {name}: {e}") from e

    async def _serve_lookup(self, name: str, transport: SumdbTransport, subpath: str) -> Response:
        mod = subpath.removeprefix("lookup/")
        if not _MOD_VER.fullmatch(mod):
            return _text(400, "invalid module@version syntax", CACHE_NOT_FOUND)
        esc_path, _, esc_vers = mod.partition("@")
        try:
            module, version = unescape_path(esc_path), unescape_version(esc_vers)
        except InvalidRequest as e:
            return _text(400, str(e), CACHE_NOT_FOUND)
        key = cache_prefix(name) + subpath
        body = await self._store.get(key)
        if body is not None:
            return Response(200, TEXT, body, CACHE_FOREVER)
        try:
            body = await self._flight.do(key, lambda: self._fetch_lookup(name, transport, key))
        except NotFound:
            return _text(404, f"not found: {module}@{version}", CACHE_NOT_FOUND)
        except UpstreamError as e:
            return _bad_gateway(f"checksum database {name}: {e}")
        return Response(200, TEXT, body, CACHE_FOREVER)

    async def _fetch_lookup(self, name: str, transport: SumdbTransport, key: str) -> bytes:
        body = await transport.fetch(key.removeprefix(cache_prefix(name)))
        try:
            _, _, note_msg = parse_record(body)
        except SumdbError as e:
            raise _InvalidUpstream(f"invalid lookup response: {e}") from e
        self._check_note(name, note_msg)
        await self._store.put_bytes(key, body)
        return body

    async def _serve_tile(self, name: str, transport: SumdbTransport, subpath: str) -> Response:
        try:
            tile = parse_tile_path(subpath)
        except BadTilePath as e:
            return _text(400, str(e), CACHE_NOT_FOUND)
        if tile.L >= 64:
            return _text(404, "tile not found", CACHE_NOT_FOUND)
        ctype = TEXT if tile.L == -1 else BINARY
        prefix = cache_prefix(name)
        data = await self._store.get(prefix + subpath)
        if data is None and not tile.is_full:
            full = await self._store.get(prefix + tile.full().path())
            if full is not None:
                data = self._truncate(tile, full)
        if data is not None:
            return Response(200, ctype, data, CACHE_FOREVER)
        try:
            data = await self._flight.do(
                prefix + subpath, lambda: self._fetch_tile(tile, transport, prefix + subpath)
            )
        except NotFound:
            return _text(404, "tile not found", CACHE_NOT_FOUND)
        except UpstreamError as e:
            return _bad_gateway(f"checksum database {name}: {e}")
        return Response(200, ctype, data, CACHE_FOREVER)

    @staticmethod
    def _truncate(tile: Tile, full: bytes) -> bytes | None:
        if tile.L == -1:
            return _truncate_data_tile(full, tile.W)
        if len(full) < tile.W * HASH_SIZE:
            return None
        return full[: tile.W * HASH_SIZE]

    async def _fetch_tile(self, tile: Tile, transport: SumdbTransport, key: str) -> bytes:
        data = await transport.fetch(tile.path())
        if tile.L == -1:
            ok = data.endswith(b"\n\n") and len(data.split(b"\n\n")) - 1 == tile.W
        else:
            ok = len(data) == tile.W * HASH_SIZE
        if not ok:
            raise _InvalidUpstream(f"{tile.path()}: wrong size ({len(data)} bytes)")
        await self._store.put_bytes(key, data)
        return data
