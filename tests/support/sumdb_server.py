"""sumdb_server runs a test checksum database on 127.0.0.1, built on gomirror.sumdb itself.

``TestSumdb`` keeps a log of go.sum records and answers ``/latest``,
``/lookup/<escpath>@<escver>`` and ``/tile/H/L|data/NNN[.p/W]`` exactly like
x/mod's ``sumdb.Server`` over ``sumdb.TestServer`` (same bytes, same statuses,
same content types), signing with cmd/go's test key unless told otherwise.
Records come from ``add()`` or lazily from a ``source(module, version)``
callback, as the real database fetches modules it has not seen. Tests can
mount it under a path prefix, read the list of request paths it received, and
make it misbehave: ``fork()`` rewrites history, ``rollback()`` forgets records,
``set_override()`` replaces one answer. ``BackgroundServer`` runs any aiohttp app
in a thread with its own loop (start()/stop(), ``url``, context manager).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from gomirror.errors import Gone, InvalidRequest, NotFound, UpstreamError
from gomirror.module.paths import unescape_path, unescape_version
from gomirror.sumdb.note import Signer, parse_signer, sign
from gomirror.sumdb.tiles import BadTilePath, parse_tile_path, read_tile_data
from gomirror.sumdb.tlog import (
    ListHashReader,
    Tree,
    format_record,
    format_tree,
    stored_hashes,
    tree_hash,
)

TEST_SIGNER_KEY = (
    "PRIVATE+KEY+localhost.localdev/sumdb+00000c67+AXu6+oaVaOYuQOFrf1V59JK1owcFlJcHwwXHDfDGxSPk"
)
TEST_VERIFIER_KEY = "localhost.localdev/sumdb+00000c67+AcTrnkbUA+TU4heY3hkjiSES/DSQniBqIeQ/YppAUtK6"
TEXT_OK = "text/plain; charset=UTF-8"
TEXT_ERROR = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
_MOD_VER = re.compile(r"[^@]+@v[0-9]+\.[0-9]+\.[0-9]+(-[^@]*)?(\+incompatible)?")

Source = Callable[[str, str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the test database."""

    status: int
    content_type: str
    body: bytes


def go_sum_record(module: str, version: str, zip_h1: str, mod_h1: str) -> bytes:
    """Return the record text the database stores for a module version."""
    return f"{module} {version} {zip_h1}\n{module} {version}/go.mod {mod_h1}\n".encode()


class BackgroundServer:
    """Runs an aiohttp application on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app_factory: Callable[[], Awaitable[web.Application]]) -> None:
        self._factory = app_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.url = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="test-http", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("test server failed to start") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as e:  # handed to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _setup(self) -> None:
        self._runner = web.AppRunner(await self._factory(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def run(self, coro: Awaitable[object]) -> object:
        """Run a coroutine on the server's loop and return its result (for tests)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_await(coro), self._loop).result()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = None

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _await(coro: Awaitable[object]) -> object:
    return await coro


class TestSumdb:
    """A checksum database for tests (see the module docstring)."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        *,
        signer_key: str = TEST_SIGNER_KEY,
        source: Source | None = None,
        prefix: str = "",
        drop_partial_tiles: bool = False,
    ) -> None:
        self.signer: Signer = parse_signer(signer_key)
        self.name = self.signer.name
        self.verifier_key = self.signer.verifier().key_string()
        self.source = source
        self.prefix = prefix.rstrip("/")
        self.drop_partial_tiles = drop_partial_tiles
        self._lock = threading.Lock()
        self._records: list[bytes] = []
        self._index: dict[str, int] = {}
        self._hashes: list[bytes] = []
        self._overrides: dict[str, Answer] = {}
        self._requests: list[str] = []
        self._server = BackgroundServer(self._make_app)

    # --- the log ------------------------------------------------------------

    def add(self, module: str, version: str, zip_h1: str, mod_h1: str) -> int:
        """Append the record of module version and return its id (existing id if known)."""
        return self.add_record(module, version, go_sum_record(module, version, zip_h1, mod_h1))

    def add_record(self, module: str, version: str, text: bytes) -> int:
        """Append arbitrary record text under module@version and return its id."""
        with self._lock:
            key = f"{module}@{version}"
            if key in self._index:
                return self._index[key]
            record_id = len(self._records)
            self._records.append(text)
            self._index[key] = record_id
            self._hashes.extend(stored_hashes(record_id, text, ListHashReader(self._hashes)))
            return record_id

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._records)

    def _rebuild(self) -> None:
        self._hashes = []
        for i, text in enumerate(self._records):
            self._hashes.extend(stored_hashes(i, text, ListHashReader(self._hashes)))

    def fork(self, module: str, version: str, zip_h1: str, mod_h1: str) -> None:
        """Rewrite an existing record: every later signed head contradicts earlier ones."""
        with self._lock:
            record_id = self._index[f"{module}@{version}"]
            self._records[record_id] = go_sum_record(module, version, zip_h1, mod_h1)
            self._rebuild()

    def rollback(self, size: int) -> None:
        """Forget every record from id ``size`` on, as a database restored from backup would."""
        with self._lock:
            self._records = self._records[:size]
            self._index = {k: v for k, v in self._index.items() if v < size}
            self._rebuild()

    def tree(self) -> Tree:
        with self._lock:
            return self._tree_locked()

    def _tree_locked(self) -> Tree:
        n = len(self._records)
        return Tree(n, tree_hash(n, ListHashReader(self._hashes)))

    def signed(self) -> bytes:
        """Return the signed note of the current tree head."""
        with self._lock:
            return sign(format_tree(self._tree_locked()), [self.signer])

    # --- misbehaviour and observation -----------------------------------------

    def set_override(
        self, path: str, body: bytes, status: int = 200, content_type: str = TEXT_OK
    ) -> None:
        """Answer ``path`` (e.g. ``/tile/8/0/000.p/3``) with fixed bytes from now on."""
        with self._lock:
            self._overrides[path] = Answer(status, content_type, body)

    def clear_overrides(self) -> None:
        with self._lock:
            self._overrides.clear()

    @property
    def requests(self) -> list[str]:
        """Paths received so far, relative to the database base (prefix removed)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- answering ------------------------------------------------------------

    def answer(self, path: str) -> Answer:
        """Answer one GET of ``path`` (relative to the database base, leading slash)."""
        with self._lock:
            self._requests.append(path)
            override = self._overrides.get(path)
        if override is not None:
            return override
        if path == "/latest":
            return Answer(200, TEXT_OK, self.signed())
        if path.startswith("/lookup/"):
            return self._lookup(path.removeprefix("/lookup/"))
        if path.startswith("/tile/"):
            return self._tile(path[1:])
        return _error(404, "404 page not found")

    def _lookup(self, mod: str) -> Answer:
        if not _MOD_VER.fullmatch(mod):
            return _error(400, "invalid module@version syntax")
        esc_path, _, esc_vers = mod.partition("@")
        try:
            module = unescape_path(esc_path)
            version = unescape_version(esc_vers)
        except InvalidRequest as e:
            return _error(500, str(e))
        with self._lock:
            record_id = self._index.get(f"{module}@{version}")
        if record_id is None:
            if self.source is None:
                return _error(404, f"{module}@{version}: not found")
            try:
                found = self.source(module, version)
            except NotFound as e:
                return _error(404, str(e))
            if found is None:
                return _error(404, f"{module}@{version}: not found")
            record_id = self.add(module, version, *found)
        with self._lock:
            text = self._records[record_id]
            body = format_record(record_id, text)
            body += sign(format_tree(self._tree_locked()), [self.signer])
        return Answer(200, TEXT_OK, body)

    def _tile(self, path: str) -> Answer:
        try:
            tile = parse_tile_path(path)
        except BadTilePath:
            return _error(400, "invalid tile syntax")
        with self._lock:
            size = len(self._records)
            start = tile.N << tile.H
            if tile.L == -1:
                if start + tile.W > size:
                    return _error(404, "tile not found")
                texts = self._records[start : start + tile.W]
                return Answer(200, TEXT_OK, b"".join(t + b"\n" for t in texts))
            shift = tile.H * tile.L
            if (start + tile.W) << shift > size:
                return _error(404, "tile not found")
            full_exists = (start + (1 << tile.H)) << shift <= size
            if self.drop_partial_tiles and not tile.is_full and full_exists:
                return _error(404, "tile not found")
            data = read_tile_data(tile, ListHashReader(self._hashes))
        return Answer(200, BINARY, data)

    # --- HTTP -------------------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return _to_web(_error(404, "404 page not found"))
            path = path[len(self.prefix) :]
        return _to_web(self.answer(path))

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        """The database base URL, prefix included."""
        return self._server.url + self.prefix

    def __enter__(self) -> TestSumdb:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class MemoryStore:
    """An in-memory stand-in for the storage backend (tested elsewhere): get/put_bytes only."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts: list[str] = []

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put_bytes(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        self.data[key] = data


class DirectTransport:
    """A SumdbTransport calling ``TestSumdb.answer`` in process (no sockets)."""

    def __init__(self, db: TestSumdb) -> None:
        self.db = db

    async def fetch(self, path: str) -> bytes:
        answer = self.db.answer("/" + path)
        if answer.status == 200:
            return answer.body
        if answer.status == 410:
            raise Gone(answer.body.decode())
        if answer.status == 404:
            raise NotFound(answer.body.decode())
        raise UpstreamError(f"{path}: {answer.status} {answer.body.decode()}")


def _error(status: int, text: str) -> Answer:
    return Answer(status, TEXT_ERROR, text.encode() + b"\n")


def _to_web(a: Answer) -> web.Response:
    return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})
