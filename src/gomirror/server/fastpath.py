"""server.fastpath answers warm cache hits below aiohttp and hands every other connection to aiohttp.

Contract:

- ``FastPath.protocol`` is the protocol factory of the listening socket, so each
  accepted connection is a ``FastConnection`` first. It reads HTTP/1.1 request
  heads itself and answers ``GET``/``HEAD`` for a path of its ``HotTable`` with
  exactly the status line, headers and body aiohttp sent for that path (the
  ``Date`` renewed, ``X-Gomirror-Cache: hit``); small files from memory, zips
  up to ``INLINE_ZIP`` read and written with their head in one write (a lone head
  segment before ``sendfile`` cost clients a delayed-ACK wait), larger zips with
  ``loop.sendfile``.
- The table learns only from aiohttp: ``FastPath.learn`` is an
  ``on_response_prepare`` hook that records a ``200`` for ``.info``/``.mod``/
  ``.zip`` that is ``immutable``, or a fresh ``@v/list``/``@latest``, when the
  answer is the local file's content (read back and compared) and carries no
  ``Connection`` header. Answers are checked against the file's inode, mtime
  and size: a zip by ``fstat`` of the file it opens for each answer, a list or
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
  reading stops while an answer is sent or the transport's buffer is full.
- Request metrics, cache metrics, popularity and access-log lines for answers
  given here are counted in memory and flushed within ``FLUSH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import re
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
        self._bounds: list[float] = list(
            getattr(metrics.request_seconds, "_upper_bounds", None) or [float("inf")]
        )
        self.answered = 0  # requests answered here (tests and benchmarks read it)
        self.handed_over = 0  # connections given to aiohttp

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


class FastConnection(asyncio.Protocol):
    """One client connection until it is answered here to the end or handed to aiohttp."""

    __slots__ = (
        "_buf",
        "_checked",
        "_deadline",
        "_eof",
        "_fwd_tail",
        "_handler",
        "_idle",
        "_loop",
        "_paused",
        "_remote",
        "_sending",
        "_transport",
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

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self._buf = self._buf + data if self._buf else data
        if not self._sending and not self._paused:
            self._serve()

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
            opened = None
            if head is not None and is_get and entry.body is None:
                opened = self._open(entry)
                if opened is None:
                    head = None
            if head is None:
                table.drop(target)  # the file changed: the full path answers and may re-learn
                self._pass_on(end)
                return
            entry_body = entry.body
            if opened is not None and entry.size <= INLINE_ZIP:
                # A small zip goes out with its head in one write: a head segment followed
                # by sendfile made wrk wait on delayed ACKs (p99 ~45 ms at 1 connection).
                with opened:
                    entry_body = opened.read(entry.size + 1)
                opened = None
                if len(entry_body) != entry.size:
                    table.drop(target)
                    self._pass_on(end)
                    return
            buf = self._buf = buf[end + 4 :]
            # Timed to the head being written, as the aiohttp path times its handler.
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
