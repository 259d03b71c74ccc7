"""server.fastpath answers warm cache hits below aiohttp and hands every other connection to aiohttp.

Contract:

- ``FastPath.protocol`` is the protocol factory of the listening socket, so each
  accepted connection is a ``FastConnection`` first. It reads HTTP/1.1 request
  heads itself and answers ``GET``/``HEAD`` for a path of its ``HotTable`` with
  exactly the status line, headers and body aiohttp sent for that path (the
  ``Date`` renewed, ``X-Gomirror-Cache: hit``); small files from memory, zips
  up to ``INLINE_ZIP`` read and written with their head in one write (a lone head
  segment before ``sendfile`` cost clients a delayed-ACK wait), larger zips by
  ``os.sendfile`` called here on the non-blocking socket, the head corked in front
  (``TCP_CORK``), the rest sent from a writer callback when the socket is full; on a
  transport that is not a plain selector socket (TLS, uvloop) or with bytes still
  queued in the transport, ``loop.sendfile`` instead.
- The table learns only from aiohttp: ``FastPath.learn`` is an
  ``on_response_prepare`` hook that records a ``200`` for ``.info``/``.mod``/
  ``.zip`` that is ``immutable``, or a fresh ``@v/list``/``@latest``, when the
  answer is the local file's content (read back and compared) and carries no
  ``Connection`` header. Answers are checked against the file's inode, mtime
  and size: a zip by a ``stat`` of its path per answer, sent from a descriptor
  kept open in ``OpenFiles`` (bounded LRU; one whose path no longer names it is
  closed within ``SWEEP_SECONDS``, so a purge frees space) whose ``fstat`` matched when it was
  opened (an open descriptor pins its inode number, so a path that still stats
  to the same inode, mtime and size names that very file), a list or
  ``@latest`` by a ``stat`` per answer (it stops being served when it stops being
  fresh; its ``max-age`` is computed per request exactly as the service does),
  an ``.info``/``.mod`` by a ``stat`` at most every ``RECHECK_SECONDS`` (1 s:
  immutable files change only when purged, and a stat per hit costs ~12% of
  the path). A purged or replaced file is handed to aiohttp from then on. The
  table is bounded by bytes.
- A request it cannot answer (not in the table, another method or version, a
  ``Range``/conditional/``Connection`` header, anything it does not parse
  strictly) goes to aiohttp: the runner's protocol factory (``web.Server()``,
  whatever handler class it makes) gets ``connection_made`` with the same
  transport. When the request frames alone (a complete head without body
  headers) only it is passed on and the connection is shared: bytes go to
  aiohttp, in order, while it is busy, and the next hot request after it is idle
  again is answered here. Anything else (a body, an odd head, end of input) hands
  the connection over for good (``transport.set_protocol``) with every byte not
  yet answered. Pipelined requests are answered in order; a handover happens
  only between two answers, never while one is being sent.
- Limits stay those of the aiohttp path: connections owned here count against
  ``max_connections`` together with aiohttp's (past it: the same ``503``), a
  connection that completes no request within ``idle_timeout`` is closed, and
  reading stops while the transport's buffer is full or, while a zip is being
  sent, once more than ``MAX_HEAD`` bytes of further requests wait.
- Request metrics, cache metrics, popularity and access-log lines for answers
  given here are counted in memory and flushed within ``FLUSH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol, cast

from aiohttp import web

from gomirror.answers import Lifetime
from gomirror.monitor.metrics import Metrics
from gomirror.server import responses as R
from gomirror.server.limits import BUSY
from gomirror.server.routes import ModuleRequest, parse_path

log = logging.getLogger(__name__)
monotonic = time.monotonic  # the loop's clock (loop.time() is this, behind a method call)
access_log = logging.getLogger("gomirror.access")

HOT_BYTES = 32 << 20  # bodies of small answers plus every entry's header bytes
HOT_ENTRIES = 100_000
SMALL_MAX = 256 << 10  # larger non-zip bodies are not kept (lists stay far below)
MAX_HEAD = 8192  # a longer request head is aiohttp's to refuse
MAX_HEADERS = 64
FLUSH_SECONDS = 0.25
INLINE_ZIP = 256 << 10  # zips up to this size are read and sent with their head
OPEN_FILES = 64  # descriptors of hot zips kept open per process
SWEEP_SECONDS = 5.0  # how soon a kept descriptor of a purged zip is closed (frees its space)
RECHECK_SECONDS = 1.0  # an immutable small file is stat'ed at most this often
IMMUTABLE_KINDS = ("info", "mod", "zip")
MUTABLE_KINDS = ("list", "latest")

# Strict grammar: anything else is aiohttp's to judge (usually a 400).
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t\x20-\x7e\x80-\xff]*)")
# Headers that change what aiohttp would answer, or mean a body follows.
HANDOVER_HEADERS = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"expect",
        b"upgrade",
        b"connection",
        b"te",
        b"trailer",
    }
)
DATE_SLOT = 0
CACHE_SLOT = 1


class RequestCounter(Protocol):
    """The monitor's popularity count (``server.http.RequestListener``)."""

    def record(self, module: str) -> None: ...


Ident = tuple[int, int, int]  # inode, mtime in ns, size


@dataclass(slots=True)
class HotEntry:
    """One answer aiohttp gave, as bytes to send again."""

    segments: tuple[bytes | int, ...]  # header bytes, with DATE_SLOT/CACHE_SLOT to fill
    file: str
    ident: Ident
    size: int
    endpoint: str
    module: str
    body: bytes | None  # None: a zip, sent from the file
    mutable: bool = False
    cost: int = 0
    checked: float = -1e9  # monotonic time of the last stat that found the file unchanged
    pre: bytes = b""  # immutable entries: the head is pre + Date value + post
    post: bytes = b""
    key: str = ""  # the storage key, for last-use bookkeeping (cache gc)

    def __post_init__(self) -> None:
        if not self.mutable and len(self.segments) == 3:
            first, _, last = self.segments
            assert isinstance(first, bytes) and isinstance(last, bytes)
            self.pre, self.post = first, last


class HotTable:
    """Raw request path → ``HotEntry``, least recently used dropped first, bounded by bytes."""

    def __init__(self, max_bytes: int = HOT_BYTES, max_entries: int = HOT_ENTRIES) -> None:
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._items: OrderedDict[bytes, HotEntry] = OrderedDict()
        self.bytes = 0

    def get(self, target: bytes) -> HotEntry | None:
        entry = self._items.get(target)
        if entry is not None:
            self._items.move_to_end(target)
        return entry

    def put(self, target: bytes, entry: HotEntry) -> None:
        entry.cost = len(target) + sum(len(s) for s in entry.segments if isinstance(s, bytes))
        entry.cost += len(entry.body or b"") + len(entry.file) + 200
        if entry.cost > self._max_bytes:
            return
        self.drop(target)
        self._items[target] = entry
        self.bytes += entry.cost
        while self.bytes > self._max_bytes or len(self._items) > self._max_entries:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.cost

    def drop(self, target: bytes) -> None:
        old = self._items.pop(target, None)
        if old is not None:
            self.bytes -= old.cost

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, target: bytes) -> bool:
        return target in self._items


class OpenFiles:
    """Open read-only descriptors of hot zips by path, least recently used closed first.

    ``acquire`` returns a descriptor only while the path names the file the entry was
    learnt from (a ``stat`` of the path equal to ``ident``); sends read it with explicit
    offsets (``sendfile``/``pread``), so concurrent answers share one descriptor. One
    evicted or replaced while a send uses it is closed when that send ``release``s it.
    """

    def __init__(self, limit: int = OPEN_FILES) -> None:
        self._limit = limit
        self._fds: OrderedDict[str, tuple[int, Ident]] = OrderedDict()
        self._users: dict[int, int] = {}
        self._retired: set[int] = set()

    def acquire(self, file: str, ident: Ident) -> int | None:
        try:
            st = os.stat(file)  # noqa: PTH116 - the hot path stays on str paths
        except OSError:
            self.forget(file)
            return None
        if (st.st_ino, st.st_mtime_ns, st.st_size) != ident:
            self.forget(file)
            return None
        got = self._fds.get(file)
        if got is not None and got[1] == ident:
            self._fds.move_to_end(file)
            fd = got[0]
        else:
            self.forget(file)
            try:
                fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            st = os.fstat(fd)
            if (st.st_ino, st.st_mtime_ns, st.st_size) != ident:
                os.close(fd)
                return None
            self._fds[file] = (fd, ident)
            while len(self._fds) > self._limit:
                _, (old, _) = self._fds.popitem(last=False)
                self._retire(old)
        self._users[fd] = self._users.get(fd, 0) + 1
        return fd

    def release(self, fd: int) -> None:
        n = self._users.pop(fd, 1) - 1
        if n > 0:
            self._users[fd] = n
        elif fd in self._retired:
            self._retired.discard(fd)
            os.close(fd)

    def forget(self, file: str) -> None:
        got = self._fds.pop(file, None)
        if got is not None:
            self._retire(got[0])

    def close_all(self) -> None:
        for file in list(self._fds):
            self.forget(file)

    def sweep(self) -> None:
        """Close the descriptors whose path no longer names their file (purged, replaced).

        Without this a purged zip's disk space stays pinned until its path is asked again.
        """
        for file, (_, ident) in list(self._fds.items()):
            try:
                st = os.stat(file)  # noqa: PTH116 - str paths throughout
            except OSError:
                self.forget(file)
                continue
            if (st.st_ino, st.st_mtime_ns, st.st_size) != ident:
                self.forget(file)

    def __len__(self) -> int:
        return len(self._fds)

    def _retire(self, fd: int) -> None:
        if self._users.get(fd):
            self._retired.add(fd)
        else:
            os.close(fd)


@dataclass
class _Tally:
    """Counts for one endpoint since the last flush."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=list)


class FastPath:
    """The hot table, its connections and their batched bookkeeping (see the module docstring)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        locate: Callable[[str], Path | None],
        idle_timeout: float,
        max_connections: int,
        mutable_ttl: float,
        access_log_enabled: bool,
        requests: RequestCounter | None = None,
        table: HotTable | None = None,
        touch: Callable[[str], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.table = table or HotTable()
        self.files = OpenFiles()
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.mutable_ttl = mutable_ttl
        self.access_log_enabled = access_log_enabled
        self._locate = locate
        self._requests = requests
        self._touch = touch  # a hit here is a use too: gc must not evict what is served
        self.connections: set[FastConnection] = set()
        self._server: web.Server | None = None
        self._date_second = -1
        self._date = b""
        self._tallies: dict[str, _Tally] = {}
        self._popular: dict[str, int] = {}
        self._lines: list[tuple[str, str, int, float, str]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._bounds: list[float] = list(
            getattr(metrics.request_seconds, "_upper_bounds", None) or [float("inf")]
        )
        self.answered = 0  # requests answered here (tests and benchmarks read it)
        self.handed_over = 0  # connections given to aiohttp
        self.direct_sends = 0  # zips sent by os.sendfile from the protocol (tests read it)
        self.writer_waits = 0  # times a direct send waited for the socket to drain

    # --- wiring ------------------------------------------------------------

    def bind(self, server: web.Server) -> None:
        """Use this aiohttp server's handler factory for handovers and count its connections."""
        self._server = server

    def protocol(self) -> FastConnection:
        """The listening socket's protocol factory."""
        return FastConnection(self)

    def make_handler(self) -> asyncio.Protocol:
        assert self._server is not None, "FastPath.bind was not called"
        handler: asyncio.Protocol = self._server()
        return handler

    def full(self) -> bool:
        busy = len(self._server.connections) if self._server is not None else 0
        return busy + len(self.connections) >= self.max_connections

    def close_all(self) -> None:
        """Close every connection still owned here (server shutdown) and flush the counts."""
        for conn in list(self.connections):
            conn.close()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self.files.close_all()
        self.flush()

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = formatdate(now, usegmt=True).encode()
        return self._date

    # --- learning ----------------------------------------------------------

    async def learn(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare`` hook: remember an answer that can be given again (see above)."""
        if response.status != 200 or request.version != (1, 1):
            return
        headers = response.headers
        if "Connection" in headers or "X-Gomirror-Stale" in headers:
            return
        if headers.get("X-Gomirror-Cache") not in ("hit", "miss"):
            return
        raw = request.raw_path
        if "?" in raw or "#" in raw or len(raw) > 2048:
            return
        target = raw.encode("ascii", "replace")
        if target in self.table:
            return
        try:
            self._learn(target, raw, response)
        except (OSError, ValueError) as e:
            log.debug("fast path cannot keep an answer", extra={"path": raw[:300], "error": str(e)})

    def _learn(self, target: bytes, raw: str, response: web.StreamResponse) -> None:
        try:
            req = parse_path(raw)
        except Exception:
            return
        if not isinstance(req, ModuleRequest):
            return
        cache_control = response.headers.get("Cache-Control", "")
        immutable = cache_control == R.IMMUTABLE_CACHE
        if immutable and req.endpoint in IMMUTABLE_KINDS:
            mutable = False
        elif req.endpoint in MUTABLE_KINDS and cache_control.startswith("public, max-age="):
            mutable = True
        else:
            return
        path = self._locate(storage_key(req))
        if path is None:
            return
        file = str(path)
        st = os.stat(file)  # noqa: PTH116 - str paths: no Path objects per request
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        body: bytes | None = None
        if req.endpoint == "zip":
            etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            if not isinstance(response, web.FileResponse) or response.headers.get("ETag") != etag:
                return
        else:
            if not isinstance(response, web.Response) or st.st_size > SMALL_MAX:
                return
            sent = response.body
            if not isinstance(sent, bytes):
                return
            with open(file, "rb") as f:
                if f.read(SMALL_MAX + 1) != sent:
                    return  # not the file's content (merged, stale, replaced): not ours to repeat
            body = sent
        if response.headers.get("Content-Length") != str(st.st_size):
            return
        segments = head_segments(response, mutable=mutable)
        if segments is None or (not mutable and len(segments) != 3):
            return
        entry = HotEntry(
            segments,
            file,
            ident,
            st.st_size,
            req.endpoint,
            req.module,
            body,
            mutable,
            key=storage_key(req),
        )
        self.table.put(target, entry)

    # --- bookkeeping -------------------------------------------------------

    def record(
        self, entry: HotEntry, method: str, target: bytes, seconds: float, remote: str
    ) -> None:
        """Count one answer given here; flushed to metrics, popularity and log shortly."""
        self.answered += 1
        tally = self._tallies.get(entry.endpoint)
        if tally is None:
            tally = self._tallies[entry.endpoint] = _Tally(buckets=[0] * len(self._bounds))
        tally.requests += 1
        tally.bytes += entry.size
        tally.seconds += seconds
        i = bisect.bisect_left(self._bounds, seconds)
        tally.buckets[min(i, len(tally.buckets) - 1)] += 1
        if self._touch is not None:
            self._touch(entry.key)
        if self._requests is not None:
            self._popular[entry.module] = self._popular.get(entry.module, 0) + 1
        if self.access_log_enabled:
            path = target[:300].decode("ascii", "replace")
            self._lines.append((method, path, entry.size, seconds, remote))
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(FLUSH_SECONDS, self.flush)

    def _sweep(self) -> None:
        self._sweep_handle = None
        self.files.sweep()
        if len(self.files):
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(SWEEP_SECONDS, self._sweep)

    def flushed(self, render: Callable[[], Awaitable[bytes]]) -> Callable[[], Awaitable[bytes]]:
        """``render`` (the metrics exposition), flushing the batched counts first."""

        async def flush_then_render() -> bytes:
            self.flush()
            return await render()

        return flush_then_render

    def flush(self) -> None:
        """Hand the counts gathered since the last flush to metrics, popularity and the log."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._sweep_handle is None and len(self.files):
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(SWEEP_SECONDS, self._sweep)
        tallies, self._tallies = self._tallies, {}
        for endpoint, t in tallies.items():
            m = self.metrics
            m.requests.labels(endpoint, "200").inc(t.requests)
            m.bytes_served.labels(endpoint).inc(t.bytes)
            m.cache.labels(endpoint, "hit").inc(t.requests)
            observe_many(m.request_seconds.labels(endpoint), self._bounds, t.buckets, t.seconds)
        popular, self._popular = self._popular, {}
        if self._requests is not None:
            for module, n in popular.items():
                for _ in range(n):
                    self._requests.record(module)
        lines, self._lines = self._lines, []
        for method, path, size, seconds, remote in lines:
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "path": path,
                    "status": 200,
                    "bytes": size,
                    "ms": round(seconds * 1000, 2),
                    "cache": "hit",
                    "remote": remote,
                },
            )


def storage_key(req: ModuleRequest) -> str:
    """The storage key the service keeps this answer under (a GOPROXY tree path)."""
    from gomirror.module.paths import escape_path, escape_version

    base = escape_path(req.module)
    if req.endpoint == "list":
        return f"{base}/@v/list"
    if req.endpoint == "latest":
        return f"{base}/@latest"
    return f"{base}/@v/{escape_version(req.version)}.{req.endpoint}"


def head_segments(response: web.StreamResponse, *, mutable: bool) -> tuple[bytes | int, ...] | None:
    """The response head as aiohttp writes it, with slots for Date (and a mutable Cache-Control)."""
    reason = response.reason
    segments: list[bytes | int] = []
    cur = f"HTTP/1.1 {response.status} {reason}\r\n"
    seen_date = False
    for name, value in response.headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            return None
        if name == "Date":
            segments += [(cur + "Date: ").encode(), DATE_SLOT]
            cur = "\r\n"
            seen_date = True
        elif name == "Cache-Control" and mutable:
            segments += [(cur + "Cache-Control: ").encode(), CACHE_SLOT]
            cur = "\r\n"
        elif name == "X-Gomirror-Cache":
            cur += "X-Gomirror-Cache: hit\r\n"
        else:
            cur += f"{name}: {value}\r\n"
    if not seen_date:
        return None
    segments.append((cur + "\r\n").encode())
    # Merge neighbours so an immutable head is two byte strings around the Date.
    merged: list[bytes | int] = []
    for s in segments:
        if isinstance(s, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += s
        else:
            merged.append(s)
    return tuple(merged)


def observe_many(child: Any, bounds: list[float], buckets: list[int], total: float) -> None:
    """Add counted observations to a prometheus Histogram child in one step per bucket."""
    cells = getattr(child, "_buckets", None)
    summed = getattr(child, "_sum", None)
    if cells is not None and summed is not None and len(cells) == len(buckets):
        for cell, n in zip(cells, buckets, strict=True):
            if n:
                cell.inc(n)
        summed.inc(total)
        return
    # Another prometheus-client layout: observe each one at its bucket's bound.
    n_all = sum(buckets)
    for bound, n in zip(bounds, buckets, strict=True):
        for _ in range(n):
            child.observe(min(bound, total / n_all) if bound == float("inf") else bound)


def headers_ok(block: bytes) -> bool:
    """Whether a header block is one the table may answer: strict syntax, one Host, nothing odd."""
    lines = block.split(b"\r\n")
    if len(lines) > MAX_HEADERS:
        return False
    hosts = 0
    for line in lines:
        h = HEADER_LINE.fullmatch(line)
        if h is None:
            return False
        name = h.group(1).lower()
        if name == b"host":
            hosts += 1
        elif name in HANDOVER_HEADERS:
            return False
    return hosts == 1


# aiohttp RequestHandler state the shared mode reads (idle) and writes (keep-alive deadline).
SHARED_ATTRS = ("_waiter", "_messages", "_next_keepalive_close_time")


def frames_alone(head: bytes) -> bool:
    """Whether a request head (without its final blank line) is a whole request as aiohttp reads it.

    True for a strictly well-formed head without body headers, so the next request starts
    right after it for both parsers.
    """
    if len(head) > MAX_HEAD:
        return False
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1 or b" " not in lines[0] or b"\n" in lines[0]:
        return False
    for line in lines[1:]:
        h = HEADER_LINE.fullmatch(line)
        if h is None or h.group(1).lower() in (b"content-length", b"transfer-encoding"):
            return False
    return True


def same_file(entry: HotEntry) -> bool:
    """Whether the entry's path still names the file it was learnt from."""
    try:
        st = os.stat(entry.file)  # noqa: PTH116 - the hot path stays on str paths
    except OSError:
        return False
    return (st.st_ino, st.st_mtime_ns, st.st_size) == entry.ident


def direct_socket(transport: asyncio.BaseTransport, loop: Any) -> tuple[int, bool]:
    """The socket descriptor zips may be ``os.sendfile``d to directly (-1: none), and whether to cork.

    Only a plain TCP or Unix stream socket of the stock selector loop's transport: TLS
    must encrypt, and another loop (uvloop) owns its descriptors in ways not seen here.
    """
    if type(transport).__name__ != "_SelectorSocketTransport":
        return -1, False
    if transport.get_extra_info("sslcontext") is not None:
        return -1, False
    if not (hasattr(loop, "_add_writer") and hasattr(loop, "_remove_writer")):
        return -1, False
    if not hasattr(os, "sendfile"):
        return -1, False
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return -1, False
    tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
    if not tcp and sock.family != getattr(socket, "AF_UNIX", None):
        return -1, False
    return sock.fileno(), tcp and hasattr(socket, "TCP_CORK")


class FastConnection(asyncio.Protocol):
    """One client connection until it is answered here to the end or handed to aiohttp."""

    __slots__ = (
        "_buf",
        "_checked",
        "_cork",
        "_deadline",
        "_eof",
        "_fd",
        "_fwd_tail",
        "_handler",
        "_idle",
        "_left",
        "_loop",
        "_offset",
        "_out",
        "_paused",
        "_remote",
        "_sending",
        "_sock",
        "_sockfd",
        "_transport",
        "_writer",
        "done",
        "fp",
    )

    def __init__(self, fp: FastPath) -> None:
        self.fp = fp
        self._buf = b""
        self._checked = b"\x00"  # the last header block found acceptable (never a real one)
        self._transport: asyncio.Transport | None = None
        self._sending = False
        self._paused = False  # the transport asked us to stop writing
        self._eof = False
        self._idle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._remote = ""
        self._handler: Any = None  # aiohttp's handler, once a request was passed to it
        self._fwd_tail = b""  # bytes given to aiohttp after its last complete request head
        self.done = False  # closed or handed over for good: no more bytes are ours
        # Direct sendfile state: the socket (-1: use loop.sendfile), the zip's descriptor
        # (-1: none being sent), head bytes not yet written, file offset and bytes left.
        self._sock: Any = None
        self._sockfd = -1
        self._cork = False
        self._fd = -1
        self._out = b""
        self._offset = 0
        self._left = 0
        self._writer = False  # a writer callback is registered on the socket

    # --- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.fp.full():
            log.warning(
                "connection limit reached", extra={"max_connections": self.fp.max_connections}
            )
            self.done = True
            self._transport.write(BUSY)
            # The next loop turn, as limits.py does: the client's request bytes are read first.
            self._loop.call_soon(self._transport.close)
            return
        self.fp.connections.add(self)
        peer = self._transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._deadline = self._loop.time() + self.fp.idle_timeout
        self._idle = self._loop.call_at(self._deadline, self._check_idle)
        self._sockfd, self._cork = direct_socket(self._transport, self._loop)
        if self._sockfd >= 0:
            self._sock = self._transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self._buf = self._buf + data if self._buf else data
        if not self._sending and not self._paused:
            self._serve()
        elif len(self._buf) > MAX_HEAD and self._transport is not None:
            self._transport.pause_reading()  # the answer being sent must finish first

    def eof_received(self) -> bool:
        self._eof = True
        if self._handler is not None and not self.done:
            self._handover()  # aiohttp decides what an end of input means (and may close)
            return True
        if not self._sending and not self._paused and not self.done:
            self._serve()
        return True  # keep the transport: answers may still be going out

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        self._stop_direct()  # before the transport closes the socket: its fd may be reused
        if self._handler is not None:
            handler, self._handler = self._handler, None
            handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self._handler is not None:
            self._handler.resume_writing()
        if not self._sending and not self.done:
            self._serve()

    # --- serving -----------------------------------------------------------

    def close(self) -> None:
        self._forget()
        self._stop_direct()
        if self._transport is not None:
            self._transport.close()

    def _forget(self) -> None:
        self.done = True
        self.fp.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _check_idle(self) -> None:
        self._idle = None
        if self.done:
            return
        now = self._loop.time()
        if now < self._deadline or self._sending:
            self._idle = self._loop.call_at(max(self._deadline, now + 1.0), self._check_idle)
            return
        self.close()

    def _serve(self) -> None:
        """Answer every complete request in the buffer that the table can answer, in order."""
        transport = self._transport
        assert transport is not None
        fp = self.fp
        table = fp.table
        buf = self._buf
        while not self.done:
            if self._paused:
                transport.pause_reading()
                return
            if self._handler is not None and buf and not self._aiohttp_idle():
                self._forward(buf)  # aiohttp is answering: what follows is its, in order
                return
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if not buf:
                    if self._eof:
                        self.close()
                        return
                elif self._eof or len(buf) > MAX_HEAD or not self._may_answer(buf):
                    self._handover()
                    return
                if not transport.is_reading():
                    transport.resume_reading()
                return
            started = monotonic()
            nl = buf.find(b"\r\n")
            parts = buf[:nl].split(b" ")
            entry = table.get(parts[1]) if len(parts) == 3 and parts[2] == b"HTTP/1.1" else None
            # The table's keys are paths aiohttp accepted, so a hit needs no further check
            # of the request line; the header block is checked once per distinct block.
            if entry is None or end > MAX_HEAD or parts[0] not in (b"GET", b"HEAD") or nl == end:
                self._pass_on(end)
                return
            headers = buf[nl + 2 : end]
            if headers != self._checked:
                if not headers_ok(headers):
                    self._pass_on(end)
                    return
                self._checked = headers
            target = parts[1]
            head = self._head(entry, started)
            is_get = parts[0] == b"GET"
            fd = -1
            if head is not None and is_get and entry.body is None:
                got = fp.files.acquire(entry.file, entry.ident)
                if got is None:
                    head = None
                else:
                    fd = got
            elif head is not None and entry.body is None and not same_file(entry):
                head = None  # a HEAD of a zip: its file is checked as a GET's would be
            if head is None:
                table.drop(target)  # the file changed: the full path answers and may re-learn
                self._pass_on(end)
                return
            entry_body = entry.body
            if fd >= 0 and entry.size <= INLINE_ZIP:
                # A small zip goes out with its head in one write: a head segment followed
                # by sendfile made wrk wait on delayed ACKs (p99 ~45 ms at 1 connection).
                try:
                    entry_body = os.pread(fd, entry.size + 1, 0)
                finally:
                    fp.files.release(fd)
                fd = -1
                if len(entry_body) != entry.size:
                    table.drop(target)
                    self._pass_on(end)
                    return
            opened = None
            if fd >= 0 and (self._sockfd < 0 or transport.get_write_buffer_size() > 0):
                # loop.sendfile moves the file position: it gets a file of its own.
                fp.files.release(fd)
                fd = -1
                opened = self._open(entry)
                if opened is None:
                    table.drop(target)
                    self._pass_on(end)
                    return
            buf = self._buf = buf[end + 4 :]
            # Timed to the head being written, as the aiohttp path times its handler.
            if fd >= 0:
                if self._handler is not None:  # aiohttp's idle timer must not fire mid-send
                    self._handler._next_keepalive_close_time = started + fp.idle_timeout + 3600
                fp.record(entry, "GET", target, monotonic() - started, self._remote)
                fp.direct_sends += 1
                # Reading goes on (the client's next request is then at hand when the
                # zip is out); data_received pauses it if a client sends too much meanwhile.
                self._sending = True
                self._fd, self._out, self._offset, self._left = fd, head, 0, entry.size
                if self._cork:
                    self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                self._pump()
                return
            if opened is not None:
                if self._handler is not None:  # aiohttp's idle timer must not fire mid-send
                    self._handler._next_keepalive_close_time = started + fp.idle_timeout + 3600
                transport.write(head)
                fp.record(entry, "GET", target, monotonic() - started, self._remote)
                self._sending = True
                transport.pause_reading()
                self._loop.create_task(self._send_file(opened, entry))
                return
            transport.write(head + entry_body if is_get and entry_body is not None else head)
            now = monotonic()
            self._deadline = now + fp.idle_timeout
            if self._handler is not None:
                self._handler._next_keepalive_close_time = now + fp.idle_timeout
            fp.record(entry, "GET" if is_get else "HEAD", target, now - started, self._remote)

    def _may_answer(self, buf: bytes) -> bool:
        """Whether an incomplete head may still be one the table answers (else hand over now)."""
        nl = buf.find(b"\r\n")
        if nl < 0:
            return any(p.startswith(buf[: len(p)]) for p in (b"GET /", b"HEAD /"))
        parts = buf[:nl].split(b" ")
        return (
            len(parts) == 3
            and parts[0] in (b"GET", b"HEAD")
            and parts[2] == b"HTTP/1.1"
            and parts[1] in self.fp.table
        )

    def _head(self, entry: HotEntry, now: float) -> bytes | None:
        """The head to send, or None when the file no longer is the one the entry was made from."""
        if not entry.mutable and (entry.body is None or now < entry.checked + RECHECK_SECONDS):
            return entry.pre + self.fp.date() + entry.post  # a zip is checked when opened
        try:
            st = os.stat(entry.file)  # noqa: PTH116 - the hot path stays on str paths
        except OSError:
            return None
        if (st.st_ino, st.st_mtime_ns, st.st_size) != entry.ident:
            return None
        if not entry.mutable:
            entry.checked = now
            return entry.pre + self.fp.date() + entry.post
        age = time.time() - st.st_mtime
        if age >= self.fp.mutable_ttl:
            return None  # stale: the service decides what to answer now
        cache = R.cache_control(Lifetime.fresh(self.fp.mutable_ttl - age)).encode()
        date = self.fp.date()
        out = []
        for seg in entry.segments:
            if isinstance(seg, bytes):
                out.append(seg)
            else:
                out.append(date if seg == DATE_SLOT else cache)
        return b"".join(out)

    def _pump(self) -> None:
        """Write the head, then ``sendfile`` the zip, until done or the socket is full."""
        sockfd = self._sockfd
        if self._fd < 0 or self.done:
            return
        try:
            if self._out:
                n = os.write(sockfd, self._out)
                self._out = self._out[n:]
                if self._out:
                    self._wait_writable()
                    return
            while self._left > 0:
                n = os.sendfile(sockfd, self._fd, self._offset, self._left)
                if n == 0:
                    raise OSError("the file ended early")  # truncated under us: stop here
                self._offset += n
                self._left -= n
        except (BlockingIOError, InterruptedError):
            self._wait_writable()
            return
        except OSError as e:
            log.debug("fast path send failed", extra={"error": str(e)})
            self.close()
            return
        self._stop_direct()
        self._sending = False
        self._deadline = self._loop.time() + self.fp.idle_timeout
        if self._handler is not None:
            self._handler._next_keepalive_close_time = self._deadline
        if not self.done:
            self._serve()

    def _wait_writable(self) -> None:
        if not self._writer:
            self._writer = True
            self.fp.writer_waits += 1
            # The transport's own writer is idle (its buffer was empty when the send
            # began and nothing writes to it meanwhile); loop.add_writer refuses
            # descriptors that belong to a transport, hence the loop's internal call.
            self._loop._add_writer(self._sockfd, self._pump)  # type: ignore[attr-defined]

    def _stop_direct(self) -> None:
        """End a direct send (finished, failed or connection gone): writer, cork, descriptor."""
        if self._writer:
            self._writer = False
            self._loop._remove_writer(self._sockfd)  # type: ignore[attr-defined]
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._out, self._left = b"", 0
            self.fp.files.release(fd)
            if self._cork and self._transport is not None and not self._transport.is_closing():
                try:
                    self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
                except OSError:
                    pass

    def _open(self, entry: HotEntry) -> Any:
        try:
            f = open(entry.file, "rb")  # noqa: SIM115 - closed by _send_file
        except OSError:
            return None
        st = os.fstat(f.fileno())
        if (st.st_ino, st.st_mtime_ns, st.st_size) != entry.ident:
            f.close()
            return None
        return f

    async def _send_file(self, f: Any, entry: HotEntry) -> None:
        transport = self._transport
        assert transport is not None
        try:
            await self._loop.sendfile(transport, f, 0, entry.size)
        except (ConnectionError, OSError, RuntimeError) as e:
            log.debug("fast path send failed", extra={"error": str(e)})
            self.close()
            return
        finally:
            f.close()
            self._sending = False
        self._deadline = self._loop.time() + self.fp.idle_timeout
        if self._handler is not None:
            self._handler._next_keepalive_close_time = self._deadline
        if not self.done:
            self._serve()

    def _pass_on(self, end: int) -> None:
        """Give aiohttp the request at the head of the buffer (``end``: where its head ends, or -1).

        A complete head that frames like aiohttp frames it (no body) is passed on alone and
        the connection stays shared: aiohttp answers it, and once aiohttp is idle again the
        fast path answers the next hot request itself. Anything else is handed over for good.
        """
        buf = self._buf
        if end < 0 or not frames_alone(buf[:end]) or not self._attach():
            self._handover()
            return
        self._buf = buf[end + 4 :]
        self._handler.data_received(buf[: end + 4])
        if self._buf and not self.done:
            self._serve()  # aiohttp is busy now: the rest follows it in order

    def _attach(self) -> bool:
        """Make aiohttp's handler for this connection (once); False if it cannot be shared."""
        if self._handler is not None:
            return True
        transport = self._transport
        assert transport is not None
        handler = self.fp.make_handler()
        if not all(hasattr(handler, a) for a in SHARED_ATTRS):
            return False  # an aiohttp whose idle state we cannot see: hand over for good
        self.fp.connections.discard(self)  # aiohttp counts it from now on
        if self._idle is not None:
            self._idle.cancel()  # aiohttp's keep-alive timer rules the connection now
            self._idle = None
        self.fp.handed_over += 1
        handler.connection_made(transport)
        self._handler = handler
        return not transport.is_closing()  # closed at once: the connection limit refused it

    def _aiohttp_idle(self) -> bool:
        """Whether aiohttp has answered all it was given and waits for a next request."""
        h = self._handler
        waiter = h._waiter
        return (
            not self._fwd_tail
            and waiter is not None
            and not waiter.done()
            and not h._messages
            and self._transport is not None
            and self._transport.get_write_buffer_size() == 0
        )

    def _forward(self, data: bytes) -> None:
        """Pass bytes to aiohttp while it is busy, keeping track of where its requests end."""
        self._buf = b""
        tail = self._fwd_tail + data
        while True:
            end = tail.find(b"\r\n\r\n")
            if end < 0:
                break
            if not frames_alone(tail[:end]):
                self._fwd_tail = b""
                self._handover(forwarded=data)  # a body or odd framing: aiohttp's for good
                return
            tail = tail[end + 4 :]
        self._fwd_tail = tail
        self._handler.data_received(data)
        if len(tail) > MAX_HEAD:
            self._handover()

    def _handover(self, forwarded: bytes = b"") -> None:
        """Give the connection for good, with every byte not answered yet, to aiohttp."""
        transport = self._transport
        assert transport is not None
        self._forget()
        handler = self._handler
        if handler is None:
            self.fp.handed_over += 1
            handler = self._handler = self.fp.make_handler()
            transport.set_protocol(handler)
            handler.connection_made(transport)
        else:
            transport.set_protocol(handler)
        if not transport.is_reading():
            transport.resume_reading()
        data, self._buf = forwarded + self._buf, b""
        if data:
            handler.data_received(data)
        if self._eof and not transport.is_closing():
            keep = handler.eof_received()
            if not keep:
                transport.close()


class FastPathSite(web.BaseSite):
    """An aiohttp site whose connections start on the fast path (a ``SockSite`` otherwise)."""

    __slots__ = ("_fast", "_sock")

    def __init__(self, runner: web.BaseRunner, sock: Any, fast: FastPath) -> None:
        super().__init__(runner, backlog=1024)
        self._sock = sock
        self._fast = fast

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._fast.protocol, sock=self._sock, backlog=1024)

    async def stop(self) -> None:
        await super().stop()
        self._fast.close_all()
